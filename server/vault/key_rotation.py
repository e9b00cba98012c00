"""Key rotation: after a new key is put first in GRANTKEEPER_VAULT_KEY, re-seal every secret still held under an
older one. Each row is a compare-and-set on what was read, so a refresh racing the rotation wins."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, update
from sqlmodel import col, select

from server.vault.credentials import CREDENTIAL_FIELD
from server.vault.crypto import Keyring, Sealed, VaultIntegrityError, VaultKeyError, associated_data
from server.vault.models import Credential, MagicLink
from server.vault.sessions import change, open_session


@dataclass
class ResealCounts:
    credentials: int = 0  # re-sealed under the primary key
    magic_link_flows: int = 0  # re-sealed under the primary key
    unreadable: int = 0  # would not open (left as they are)
    credentials_current: int = 0  # already under the primary key before this pass


def reseal_with_primary_key(engine: Engine, keyring: Keyring) -> ResealCounts:
    """Re-seal every credential and link flow held under an older key with `keyring`'s primary (first) key."""
    primary = keyring.primary_id
    counts = ResealCounts()
    with open_session(engine) as session:
        counts.credentials_current = session.exec(
            select(func.count()).select_from(Credential).where(col(Credential.key_id) == primary)
        ).one()
        credentials = session.exec(
            select(Credential.account_id, Credential.version, Credential.key_id, Credential.ciphertext).where(
                col(Credential.key_id) != primary
            )
        ).all()
        flows = session.exec(
            select(MagicLink.id, MagicLink.flow_key_id, MagicLink.flow_ciphertext).where(
                col(MagicLink.flow_key_id).is_not(None), col(MagicLink.flow_key_id) != primary
            )
        ).all()

    def resealed(sealed: Sealed, aad: bytes) -> Sealed | None:
        try:
            return keyring.seal(keyring.open(sealed, aad), aad)
        except (VaultIntegrityError, VaultKeyError):
            counts.unreadable += 1
            return None

    for account_id, version, key_id, blob in credentials:
        new = resealed(Sealed(key_id, blob), associated_data("credential", account_id, CREDENTIAL_FIELD))
        if new is not None:
            counts.credentials += change(
                engine,
                update(Credential)
                .where(
                    col(Credential.account_id) == account_id,
                    col(Credential.version) == version,
                    col(Credential.key_id) == key_id,
                )
                .values(key_id=new.key_id, ciphertext=new.blob),
            )
    for link_id, flow_key_id, flow_blob in flows:
        if flow_key_id is None or flow_blob is None:
            continue  # the WHERE above excludes these; the columns are nullable
        new = resealed(Sealed(flow_key_id, flow_blob), associated_data("magic_link", link_id, "flow"))
        if new is not None:
            counts.magic_link_flows += change(
                engine,
                update(MagicLink)
                .where(col(MagicLink.id) == link_id, col(MagicLink.flow_key_id) == flow_key_id)
                .values(flow_key_id=new.key_id, flow_ciphertext=new.blob),
            )
    return counts
