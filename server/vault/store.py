"""The vault as one object, each concept's store under its own name: `vault.accounts.get(id)`,
`vault.credentials.try_lease(...)`, `vault.links.begin_flow(...)`, `vault.events.record(...)`.

Synchronous on purpose: callers on the event loop hand these calls to a worker thread with `in_vault_thread`
(threads.py). Each store is in its own module; they share the session helper in sessions.py.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine

from server.vault.accounts import Accounts
from server.vault.api_keys import ApiKeys
from server.vault.credentials import Credentials
from server.vault.crypto import Keyring, Sealed, associated_data
from server.vault.events import Events
from server.vault.incidents import Incidents
from server.vault.key_rotation import ResealCounts, reseal_with_primary_key
from server.vault.links import MagicLinks
from server.vault.outbox import Outbox
from server.vault.schedule import Schedule


class Vault:
    def __init__(self, engine: Engine, keyring: Keyring):
        self.engine = engine
        self.keyring = keyring
        self.accounts = Accounts(engine)
        self.credentials = Credentials(engine, keyring)  # sealed tokens and their refresh leases
        self.links = MagicLinks(engine, self.credentials)
        self.api_keys = ApiKeys(engine)
        self.events = Events(engine)  # the lifecycle event trail
        self.incidents = Incidents(engine)  # alerted and not yet resolved
        self.schedule = Schedule(engine)  # due refreshes and health checks, claimed by the fleet
        self.outbox = Outbox(engine, keyring)  # webhook endpoints and the messages owed to them

    # ---- sealing other tables' secrets (sign-in flows, OAuth clients, link flows, revocations) ----------------
    def seal(self, table: str, row_id: str, field_name: str, payload: dict[str, Any]) -> Sealed:
        """`payload` as JSON, sealed under the primary key and bound to (table, row, field)."""
        return self.keyring.seal(json.dumps(payload).encode(), associated_data(table, row_id, field_name))

    def open(self, table: str, row_id: str, field_name: str, sealed: Sealed) -> dict[str, Any]:
        """What `seal` sealed for the same (table, row, field); VaultIntegrityError for anything else."""
        payload: dict[str, Any] = json.loads(self.keyring.open(sealed, associated_data(table, row_id, field_name)))
        return payload

    def reseal_with_primary_key(self) -> ResealCounts:
        """Key rotation (key_rotation.py): re-seal every secret held under an older key with the primary key."""
        return reseal_with_primary_key(self.engine, self.keyring)
