"""Credentials and their refresh leases: one sealed row per account, changed only by compare-and-set.

Every refresh is a compare-and-set on (version, lease), so no database lock is ever held across a network call:
take the lease (`try_lease`), keep it alive while the provider answers (`renew_lease`), then store the rotated tokens
as the next version (`commit_refresh`), give the lease back (`release_lease`, `drop_lease`) or declare the grant
dead (`mark_grant_dead`). The fleet's scheduler claims due rows with the same lease condition (schedule.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, or_, update
from sqlmodel import Session, col

from server.vault.accounts import NO_REFRESH_TOKEN, TERMINAL_STATUSES
from server.vault.crypto import Keyring, Sealed, associated_data
from server.vault.models import AccountStatus, ConnectedAccount, Credential, RefreshOutcome, utcnow
from server.vault.sessions import change, open_session, rows_changed

CREDENTIAL_FIELD = "tokens"
# last_refresh_outcome values that mean "the refresh token may already have been spent without us storing the answer"
UNCERTAIN_OUTCOMES = (RefreshOutcome.AMBIGUOUS, RefreshOutcome.INTERRUPTED)
# last_refresh_outcome of a grant declared dead: the stored refresh token is known to be spent or refused, so it is
# never presented again (only a new version, from re-authorization, clears it).
DEAD_OUTCOME = RefreshOutcome.REJECTED


@dataclass(frozen=True)
class TokenSecrets:
    access_token: str
    refresh_token: str | None

    def __repr__(self) -> str:  # a stray log line or traceback must never show a token
        return "TokenSecrets(<redacted>)"


@dataclass(frozen=True)
class CredentialWrite:
    """What a fresh token grant becomes on its row; timings are decided by the lifecycle, not here."""

    secrets: TokenSecrets
    token_type: str
    issued_at: datetime
    access_expires_at: datetime | None
    refresh_due_at: datetime | None
    refresh_expires_at: datetime | None


@dataclass(frozen=True)
class CredentialSnapshot:
    account_id: str
    version: int
    secrets: TokenSecrets = field(repr=False)
    token_type: str
    issued_at: datetime
    access_expires_at: datetime | None
    refresh_due_at: datetime | None
    refresh_expires_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_refresh_outcome: str | None
    consecutive_failures: int

    @property
    def access_token(self) -> str:
        return self.secrets.access_token

    @property
    def refresh_token(self) -> str | None:
        return self.secrets.refresh_token


def refreshless_reason(write: CredentialWrite) -> str | None:
    """NO_REFRESH_TOKEN for a grant that will expire and cannot be refreshed (a token that never expires is fine)."""
    return NO_REFRESH_TOKEN if write.secrets.refresh_token is None and write.access_expires_at is not None else None


# ---- the lease condition, written once -----------------------------------------------------------------------
def lease_is_free(now: datetime) -> ColumnElement[bool]:
    """WHERE clause: nobody holds a live lease on the row (never leased, or the lease ran out)."""
    return or_(col(Credential.lease_until).is_(None), col(Credential.lease_until) < now)


def refresh_token_not_dead() -> ColumnElement[bool]:
    """WHERE clause: the row's refresh token is not known to be spent or refused. Even if an operator re-activates
    the account, a refresh token already refused is never presented again."""
    return or_(col(Credential.last_refresh_outcome).is_(None), col(Credential.last_refresh_outcome) != DEAD_OUTCOME)


def lease_taken(owner: str, now: datetime, lease_for: timedelta) -> dict[str, Any]:
    """SET values for taking a lease. A previous owner that still holds an (expired) lease crashed or hung between
    taking it and committing, so the refresh token it held may be spent: that is remembered as `interrupted`."""
    return {
        "lease_owner": owner,
        "lease_until": now + lease_for,
        "last_refresh_outcome": case(
            (col(Credential.lease_owner).is_not(None), "interrupted"), else_=col(Credential.last_refresh_outcome)
        ),
    }


# ---- sealing ---------------------------------------------------------------------------------------------------
def seal_secrets(keyring: Keyring, account_id: str, secrets: TokenSecrets) -> Sealed:
    plaintext = json.dumps({"access_token": secrets.access_token, "refresh_token": secrets.refresh_token})
    return keyring.seal(plaintext.encode(), associated_data("credential", account_id, CREDENTIAL_FIELD))


def open_secrets(keyring: Keyring, row: Credential) -> TokenSecrets:
    """The tokens sealed in a credential row (VaultIntegrityError / VaultKeyError when they will not open)."""
    aad = associated_data("credential", row.account_id, CREDENTIAL_FIELD)
    data = json.loads(keyring.open(Sealed(row.key_id, row.ciphertext), aad))
    return TokenSecrets(data["access_token"], data.get("refresh_token"))


def _written_values(sealed: Sealed, write: CredentialWrite) -> dict[str, Any]:
    """The credential columns a new token grant sets, wherever it comes from."""
    return {
        "key_id": sealed.key_id,
        "ciphertext": sealed.blob,
        "token_type": write.token_type,
        "issued_at": write.issued_at,
        "access_expires_at": write.access_expires_at,
        "refresh_due_at": write.refresh_due_at,
        "refresh_expires_at": write.refresh_expires_at,
    }


class Credentials:
    """`vault.credentials`: read, install and refresh an account's sealed tokens."""

    def __init__(self, engine: Engine, keyring: Keyring):
        self.engine = engine
        self.keyring = keyring

    def _snapshot(self, row: Credential) -> CredentialSnapshot:
        return CredentialSnapshot(
            account_id=row.account_id,
            version=row.version,
            secrets=open_secrets(self.keyring, row),
            token_type=row.token_type,
            issued_at=row.issued_at,
            access_expires_at=row.access_expires_at,
            refresh_due_at=row.refresh_due_at,
            refresh_expires_at=row.refresh_expires_at,
            lease_owner=row.lease_owner,
            lease_until=row.lease_until,
            last_refresh_outcome=row.last_refresh_outcome,
            consecutive_failures=row.consecutive_failures,
        )

    def read(self, account_id: str) -> CredentialSnapshot | None:
        with open_session(self.engine) as session:
            row = session.get(Credential, account_id)
            return None if row is None else self._snapshot(row)

    def timings(self, account_id: str) -> dict[str, Any] | None:
        """When the credential expires and how its last refresh went, without opening the ciphertext."""
        with open_session(self.engine) as session:
            row = session.get(Credential, account_id)
            if row is None:
                return None
            return {
                "access_expires_at": row.access_expires_at,
                "refresh_due_at": row.refresh_due_at,
                "issued_at": row.issued_at,
                "refresh_expires_at": row.refresh_expires_at,
                "last_refresh_at": row.last_refresh_at,
                "last_refresh_outcome": row.last_refresh_outcome,
            }

    def put(self, account_id: str, write: CredentialWrite) -> CredentialSnapshot:
        """Install credentials from outside the refresh path (import, re-authorization): a new version, lease cleared."""
        with open_session(self.engine) as session:
            row = self.install(session, account_id, write)
            session.commit()
            session.refresh(row)
            return self._snapshot(row)

    def install(self, session: Session, account_id: str, write: CredentialWrite) -> Credential:
        """`put`, inside the caller's transaction (a completed magic link installs the grant it brought)."""
        sealed = seal_secrets(self.keyring, account_id, write.secrets)
        row = session.get(Credential, account_id)
        if row is None:
            row = Credential(
                account_id=account_id, key_id=sealed.key_id, ciphertext=sealed.blob, version=0, issued_at=write.issued_at
            )
        row.version += 1
        for name, value in _written_values(sealed, write).items():
            setattr(row, name, value)
        row.lease_owner = row.lease_until = None
        row.consecutive_failures = 0
        row.last_refresh_outcome = None
        session.add(row)
        return row

    # ---- the refresh lease ---------------------------------------------------------------------------------
    def try_lease(self, account_id: str, version: int, owner: str, lease_for: timedelta) -> bool:
        """Compare-and-set: take the refresh lease if the row is still at `version`, nobody holds a live lease and
        its refresh token is not known to be dead. Taking over an abandoned lease (an owner that never committed nor
        released) marks the row `interrupted`."""
        now = utcnow()
        taken = change(
            self.engine,
            update(Credential)
            .where(
                col(Credential.account_id) == account_id,
                col(Credential.version) == version,
                lease_is_free(now),
                refresh_token_not_dead(),
            )
            .values(**lease_taken(owner, now, lease_for)),
        )
        return taken == 1

    def renew_lease(
        self, account_id: str, version: int, owner: str, lease_for: timedelta, not_after: datetime | None = None
    ) -> bool:
        """Extend a lease we still hold (same owner, same version) to `lease_for` from now, never past `not_after`:
        before the provider call, and as the heartbeat while it is in flight. Every takeover, commit, release or
        death writes the owner or the version, so a matching row means nobody else took it, even if it ran out.
        False: the lease is gone; do not call (or, in flight, expect the commit to be refused)."""
        now = utcnow()
        until = now + lease_for if not_after is None else min(now + lease_for, not_after)
        renewed = change(
            self.engine,
            update(Credential).where(*self._held(account_id, version, owner)).values(lease_until=until),
        )
        return renewed == 1

    def drop_lease(self, account_id: str, version: int, owner: str) -> None:
        """Hand back a lease that was never used (shutdown before the provider call): no outcome, no failure."""
        change(
            self.engine,
            update(Credential).where(*self._held(account_id, version, owner)).values(lease_owner=None, lease_until=None),
        )

    def commit_refresh(
        self, account_id: str, owner: str, version: int, write: CredentialWrite, *, outcome: str = "ok"
    ) -> CredentialSnapshot | None:
        """Store rotated tokens as version+1, but only while we still hold the lease. None means the lease was lost.
        `outcome` other than ok: what the provider answered was stored because it must not be lost (a rotated
        refresh token), but the answer was defective; it counts as a failure."""
        sealed = seal_secrets(self.keyring, account_id, write.secrets)
        now = utcnow()
        committed = change(
            self.engine,
            update(Credential)
            .where(*self._held(account_id, version, owner))
            .values(
                version=version + 1,
                **_written_values(sealed, write),
                lease_owner=None,
                lease_until=None,
                consecutive_failures=0 if outcome == "ok" else col(Credential.consecutive_failures) + 1,
                last_refresh_at=now,
                last_refresh_outcome=outcome,
            ),
        )
        return self.read(account_id) if committed == 1 else None

    def release_lease(self, account_id: str, owner: str, *, outcome: str, retry_at: datetime | None = None) -> None:
        """Give the lease back after a failed refresh; `retry_at` pushes the next proactive attempt out."""
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "last_refresh_at": utcnow(),
            "last_refresh_outcome": outcome,
            "consecutive_failures": col(Credential.consecutive_failures) + 1,
        }
        if retry_at is not None:
            values["refresh_due_at"] = retry_at
        change(
            self.engine,
            update(Credential)
            .where(col(Credential.account_id) == account_id, col(Credential.lease_owner) == owner)
            .values(**values),
        )

    def mark_grant_dead(self, account_id: str, owner: str, version: int, status: AccountStatus, reason: str) -> bool:
        """The refresh token was refused: in one transaction the lease goes, the row is marked dead (so no worker
        presents that refresh token again) and the account's status says why — unless it already says why: a grant's
        first terminal reason stays its reason. False: we no longer hold the lease at `version` (another worker
        refreshed or holds it), and nothing changed."""
        now = utcnow()
        with open_session(self.engine) as session:
            marked = rows_changed(
                session,
                update(Credential)
                .where(*self._held(account_id, version, owner))
                .values(
                    lease_owner=None,
                    lease_until=None,
                    last_refresh_at=now,
                    last_refresh_outcome=DEAD_OUTCOME,
                    consecutive_failures=col(Credential.consecutive_failures) + 1,
                    refresh_due_at=None,
                ),  # nothing left to refresh: the scheduler must not claim it again
            )
            if marked != 1:
                session.rollback()
                return False
            session.execute(
                update(ConnectedAccount)
                .where(
                    col(ConnectedAccount.id) == account_id,
                    col(ConnectedAccount.removed_at).is_(None),
                    col(ConnectedAccount.status).not_in(TERMINAL_STATUSES),
                )
                .values(status=status.value, status_reason=reason, updated_at=now)
            )
            session.commit()
            return True

    @staticmethod
    def _held(account_id: str, version: int, owner: str) -> tuple[ColumnElement[bool], ...]:
        """WHERE clauses: the row is still at `version` and `owner` still holds its lease."""
        return (
            col(Credential.account_id) == account_id,
            col(Credential.version) == version,
            col(Credential.lease_owner) == owner,
        )
