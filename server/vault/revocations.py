"""Offboarding in the vault: removing an account (credentials wiped, agents told `removed`, who did it kept) and the
queue of grants still to be ended at their provider, retried from the database until the provider accepts.

The token a pending revocation needs is sealed in its row and wiped the moment the provider accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, update
from sqlmodel import Session, col, select

from server.vault.accounts import UnknownAccountError
from server.vault.credentials import TokenSecrets, open_secrets
from server.vault.crypto import Sealed
from server.vault.models import (
    AccountStatus,
    ConnectedAccount,
    Credential,
    MagicLink,
    Revocation,
    RevocationState,
    utcnow,
)
from server.vault.sessions import change, open_session
from server.vault.store import Vault

REMOVED = "removed"  # the status reason agents see for a removed account
SEALED_FIELD = "tokens"


@dataclass(frozen=True)
class PendingRevocation:
    id: str
    account_id: str
    connector: str
    purpose: str
    attempts: int
    secrets: TokenSecrets = field(repr=False)


@dataclass(frozen=True)
class Removal:
    account: ConnectedAccount
    revocation: PendingRevocation | None  # None: there was no credential left to end


def _lease_is_free(now: datetime) -> ColumnElement[bool]:
    """WHERE clause: no worker holds a live lease on the revocation (never leased, or the lease ran out)."""
    return or_(col(Revocation.lease_until).is_(None), col(Revocation.lease_until) < now)


class Revocations:
    def __init__(self, vault: Vault):
        self.vault = vault
        self.engine = vault.engine

    def _seal(self, row_id: str, secrets: TokenSecrets) -> Sealed:
        return self.vault.seal(
            "revocation", row_id, SEALED_FIELD, {"access_token": secrets.access_token, "refresh_token": secrets.refresh_token}
        )

    def _open(self, row: Revocation) -> TokenSecrets:
        data = self.vault.open("revocation", row.id, SEALED_FIELD, Sealed(row.key_id or "", row.ciphertext or b""))
        return TokenSecrets(data["access_token"], data.get("refresh_token"))

    def pending_in(
        self, session: Session, account_id: str, connector: str, purpose: str, secrets: TokenSecrets
    ) -> PendingRevocation:
        """Queue a revocation inside the caller's transaction."""
        return self._new(session, account_id, connector, purpose, secrets)

    def _new(self, session: Session, account_id: str, connector: str, purpose: str, secrets: TokenSecrets) -> PendingRevocation:
        row = Revocation(account_id=account_id, connector=connector, purpose=purpose, next_attempt_at=utcnow())
        sealed = self._seal(row.id, secrets)
        row.key_id, row.ciphertext = sealed.key_id, sealed.blob
        session.add(row)
        return PendingRevocation(row.id, account_id, connector, purpose, 0, secrets)

    def remove_account(self, account_id: str, *, actor: str) -> Removal:
        """In one transaction: the credential row goes (its tokens move, sealed, to a pending revocation), the
        account answers `reauth_required` / `removed`, its open links die, and who removed it is kept."""
        now = utcnow()
        with open_session(self.engine) as session:
            account = session.get(ConnectedAccount, account_id)
            if account is None:
                raise UnknownAccountError(f"no account with id {account_id}")
            credential = session.get(Credential, account_id)
            pending = None
            if credential is not None:
                pending = self._new(session, account_id, account.connector, REMOVED, open_secrets(self.vault.keyring, credential))
                session.execute(delete(Credential).where(col(Credential.account_id) == account_id))
            account.status, account.status_reason = AccountStatus.REAUTH_REQUIRED.value, REMOVED
            account.removed_at, account.removed_by, account.updated_at = now, actor[:200], now
            account.health_due_at = None
            session.add(account)
            session.execute(
                update(MagicLink)
                .where(col(MagicLink.account_id) == account_id, col(MagicLink.used_at).is_(None))
                .values(used_at=now)
            )
            session.commit()
        return Removal(account, pending)

    def queue(self, account_id: str, connector: str, purpose: str, secrets: TokenSecrets) -> PendingRevocation:
        """A grant to end that is no longer any account's credential (replaced by a reconnect, refused at connect)."""
        with open_session(self.engine) as session:
            pending = self._new(session, account_id, connector, purpose, secrets)
            session.commit()
        return pending

    def claim(self, revocation_id: str, lease_for: timedelta) -> bool:
        """Compare-and-set: take a pending revocation for one attempt, so two workers never both call."""
        now = utcnow()
        claimed = change(
            self.engine,
            update(Revocation)
            .where(
                col(Revocation.id) == revocation_id,
                col(Revocation.state) == RevocationState.PENDING.value,
                _lease_is_free(now),
            )
            .values(lease_until=now + lease_for),
        )
        return claimed == 1

    def claim_due(self, now: datetime, lease_for: timedelta, limit: int = 20) -> list[PendingRevocation]:
        """Pending revocations whose next attempt is due, each claimed by this caller."""
        with open_session(self.engine) as session:
            rows = list(
                session.exec(
                    select(Revocation)
                    .where(
                        col(Revocation.state) == RevocationState.PENDING.value,
                        col(Revocation.next_attempt_at) <= now,
                        _lease_is_free(now),
                    )
                    .order_by(col(Revocation.next_attempt_at))
                    .limit(limit)
                )
            )
        claimed = []
        for row in rows:
            if self.claim(row.id, lease_for):
                claimed.append(
                    PendingRevocation(row.id, row.account_id, row.connector, row.purpose, row.attempts, self._open(row))
                )
        return claimed

    def finish(
        self, revocation_id: str, state: RevocationState, *, error: str | None = None, retry_at: datetime | None = None
    ) -> None:
        """Record an attempt. Done or unsupported: the sealed token is wiped. Still pending: tried at `retry_at`."""
        now = utcnow()
        values: dict[str, Any] = {"lease_until": None, "attempts": col(Revocation.attempts) + 1, "last_error": error}
        if state is RevocationState.PENDING:
            values["next_attempt_at"] = retry_at
        else:
            values.update(state=state.value, completed_at=now, key_id=None, ciphertext=None, next_attempt_at=None)
        change(self.engine, update(Revocation).where(col(Revocation.id) == revocation_id).values(**values))

    def latest_by_account(self) -> dict[str, Revocation]:
        """Each account's most recent revocation, for the console."""
        with open_session(self.engine) as session:
            rows = list(session.exec(select(Revocation).order_by(col(Revocation.created_at))))
        latest: dict[str, Revocation] = {}
        for row in rows:
            row.ciphertext = None  # never handed on
            latest[row.account_id] = row
        return latest

    def for_account(self, account_id: str) -> list[Revocation]:
        with open_session(self.engine) as session:
            rows = list(
                session.exec(
                    select(Revocation).where(col(Revocation.account_id) == account_id).order_by(col(Revocation.created_at))
                )
            )
        for row in rows:
            row.ciphertext = None
        return rows
