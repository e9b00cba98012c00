"""The vault's operations. Synchronous on purpose: callers on the event loop hand them to a worker thread.

Every refresh is a compare-and-set on (version, lease), so no database lock is ever held across a network call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, case, delete, exists, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from server.vault.crypto import Keyring, Sealed, VaultIntegrityError, VaultKeyError, associated_data, hash_token
from server.vault.models import (
    AccountStatus,
    AlertIncident,
    ApiKey,
    ConnectedAccount,
    Credential,
    LifecycleEvent,
    MagicLink,
    RefreshOutcome,
    utcnow,
)
from server.vault.outbox import Outbox, WebhookEvent, enqueue

CREDENTIAL_FIELD = "tokens"
# last_refresh_outcome values that mean "the refresh token may already have been spent without us storing the answer"
UNCERTAIN_OUTCOMES = (RefreshOutcome.AMBIGUOUS, RefreshOutcome.INTERRUPTED)
# last_refresh_outcome of a grant declared dead: the stored refresh token is known to be spent or refused, so it is
# never presented again (only a new version, from re-authorization, clears it).
DEAD_OUTCOME = RefreshOutcome.REJECTED
# Statuses whose reason is the grant's first, true one: later failures of the same dead grant do not rewrite it.
TERMINAL_STATUSES = (AccountStatus.REAUTH_REQUIRED.value, AccountStatus.DISABLED.value)


def outcome_after_takeover() -> Any:
    """SET expression for taking a lease: a previous owner that still holds an (expired) lease crashed or hung
    between taking it and committing, so the refresh token it held may be spent: remember that as `interrupted`."""
    return case((col(Credential.lease_owner).is_not(None), "interrupted"), else_=Credential.last_refresh_outcome)


# The status reason of an active account whose grant came without a refresh token: it works until its access
# token expires, then needs its user. Shown, alerted and offered a reconnect link; never plain `active`.
NO_REFRESH_TOKEN = "no_refresh_token"


def refreshless_reason(write: CredentialWrite) -> str | None:
    """NO_REFRESH_TOKEN for a grant that will expire and cannot be refreshed (a token that never expires is fine)."""
    return NO_REFRESH_TOKEN if write.secrets.refresh_token is None and write.access_expires_at is not None else None


class AccountExistsError(ValueError):
    pass


class UnknownAccountError(LookupError):
    pass


class ReauthorizationOutcome(StrEnum):
    COMPLETED = "completed"
    ALREADY_COMPLETED = "already_completed"
    IDENTITY_MISMATCH = "identity_mismatch"
    ACCOUNT_DISABLED = "account_disabled"


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


class Vault:
    def __init__(self, engine: Engine, keyring: Keyring):
        from server.vault.schedule import Schedule

        self.engine = engine
        self.keyring = keyring
        self.schedule = Schedule(engine)  # due refreshes and health checks, claimed by the fleet
        self.outbox = Outbox(engine, keyring)  # webhook endpoints and the messages owed to them

    # ---- sealing -------------------------------------------------------------------------------------
    def _seal_secrets(self, account_id: str, secrets: TokenSecrets) -> Sealed:
        plaintext = json.dumps({"access_token": secrets.access_token, "refresh_token": secrets.refresh_token})
        return self.keyring.seal(plaintext.encode(), associated_data("credential", account_id, CREDENTIAL_FIELD))

    def _open_secrets(self, row: Credential) -> TokenSecrets:
        aad = associated_data("credential", row.account_id, CREDENTIAL_FIELD)
        data = json.loads(self.keyring.open(Sealed(row.key_id, row.ciphertext), aad))
        return TokenSecrets(data["access_token"], data.get("refresh_token"))

    def seal(self, table: str, row_id: str, field_name: str, payload: dict[str, Any]) -> Sealed:
        return self.keyring.seal(json.dumps(payload).encode(), associated_data(table, row_id, field_name))

    def open(self, table: str, row_id: str, field_name: str, sealed: Sealed) -> dict[str, Any]:
        return json.loads(self.keyring.open(sealed, associated_data(table, row_id, field_name)))

    def _snapshot(self, row: Credential) -> CredentialSnapshot:
        return CredentialSnapshot(
            account_id=row.account_id,
            version=row.version,
            secrets=self._open_secrets(row),
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

    # ---- accounts ------------------------------------------------------------------------------------
    def create_account(
        self,
        *,
        org: str,
        user: str,
        connector: str,
        label: str = "default",
        status: AccountStatus = AccountStatus.ACTIVE,
        provider_account_id: str | None = None,
        provider_identity: dict[str, Any] | None = None,
        scopes: Iterable[str] = (),
    ) -> ConnectedAccount:
        account = ConnectedAccount(
            org=org,
            user=user,
            connector=connector,
            label=label,
            status=status.value,
            provider_account_id=provider_account_id,
            provider_identity=provider_identity or {},
            scopes=" ".join(scopes),
        )
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(account)
            try:
                session.commit()
            except IntegrityError:
                raise AccountExistsError(f"account {account.display_name} already exists") from None
        return account

    def find_account(self, org: str, user: str, connector: str, label: str = "default") -> ConnectedAccount | None:
        with Session(self.engine, expire_on_commit=False) as session:
            statement = select(ConnectedAccount).where(
                ConnectedAccount.org == org,
                ConnectedAccount.user == user,
                ConnectedAccount.connector == connector,
                ConnectedAccount.label == label,
            )
            return session.exec(statement).first()

    def get_account(self, account_id: str) -> ConnectedAccount:
        with Session(self.engine, expire_on_commit=False) as session:
            account = session.get(ConnectedAccount, account_id)
        if account is None:
            raise UnknownAccountError(f"no account with id {account_id}")
        return account

    def list_accounts(self, org: str | None = None, user: str | None = None) -> list[ConnectedAccount]:
        with Session(self.engine, expire_on_commit=False) as session:
            statement = select(ConnectedAccount).order_by(
                ConnectedAccount.org, ConnectedAccount.user, ConnectedAccount.connector, ConnectedAccount.label
            )
            if org is not None:
                statement = statement.where(ConnectedAccount.org == org)
            if user is not None:
                statement = statement.where(ConnectedAccount.user == user)
            return list(session.exec(statement))

    def set_status(
        self, account_id: str, status: AccountStatus, reason: str | None = None, *, credential_version: int | None = None
    ) -> bool:
        """Returns whether the status changed (so the caller records one event per change, not per call). A removed
        account keeps saying `removed` (a worker still holding its old token may see it refused meanwhile); only a
        completed reconnect brings it back. With `credential_version` (a provider's verdict on the token a call
        used) nothing changes once the credential moved past that version: a reconnect or a refresh came after."""
        conditions = [
            ConnectedAccount.id == account_id,
            col(ConnectedAccount.removed_at).is_(None),
            or_(ConnectedAccount.status != status.value, ConnectedAccount.status_reason.is_distinct_from(reason)),
        ]
        if credential_version is not None:
            conditions.append(exists().where(Credential.account_id == account_id, Credential.version == credential_version))
        if status == AccountStatus.REAUTH_REQUIRED:
            conditions.append(col(ConnectedAccount.status).not_in(TERMINAL_STATUSES))  # the first reason stays
        with Session(self.engine) as session:
            result = session.execute(
                update(ConnectedAccount).where(*conditions).values(status=status.value, status_reason=reason, updated_at=utcnow())
            )
            session.commit()
            return result.rowcount == 1

    def update_identity(
        self, account_id: str, provider_account_id: str | None, identity: dict[str, Any], scopes: Iterable[str]
    ) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(ConnectedAccount)
                .where(ConnectedAccount.id == account_id)
                .values(
                    provider_account_id=provider_account_id,
                    provider_identity=identity,
                    scopes=" ".join(scopes),
                    updated_at=utcnow(),
                )
            )
            session.commit()

    # ---- credentials ---------------------------------------------------------------------------------
    def read_credential(self, account_id: str) -> CredentialSnapshot | None:
        with Session(self.engine) as session:
            row = session.get(Credential, account_id)
            return None if row is None else self._snapshot(row)

    def credential_timings(self, account_id: str) -> dict[str, Any] | None:
        """When the credential expires and how its last refresh went, without opening the ciphertext."""
        with Session(self.engine) as session:
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

    def put_credential(self, account_id: str, write: CredentialWrite) -> CredentialSnapshot:
        """Install credentials from outside the refresh path (import, re-authorization): a new version, lease cleared."""
        with Session(self.engine) as session:
            row = self._install_credential(session, account_id, write)
            session.commit()
            session.refresh(row)
            return self._snapshot(row)

    def _install_credential(self, session: Session, account_id: str, write: CredentialWrite) -> Credential:
        sealed = self._seal_secrets(account_id, write.secrets)
        row = session.get(Credential, account_id)
        if row is None:
            row = Credential(
                account_id=account_id, key_id=sealed.key_id, ciphertext=sealed.blob, version=0, issued_at=write.issued_at
            )
        row.version += 1
        self._apply(row, sealed, write)
        row.lease_owner = row.lease_until = None
        row.consecutive_failures = 0
        row.last_refresh_outcome = None
        session.add(row)
        return row

    @staticmethod
    def _apply(row: Credential, sealed: Sealed, write: CredentialWrite) -> None:
        for name, value in Vault._written_values(sealed, write).items():
            setattr(row, name, value)

    @staticmethod
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

    def try_lease(self, account_id: str, version: int, owner: str, lease_for: timedelta) -> bool:
        """Compare-and-set: take the refresh lease if the row is still at `version`, nobody holds a live lease and
        its refresh token is not known to be dead. Taking over an abandoned lease (an owner that never committed nor
        released) marks the row `interrupted`."""
        now = utcnow()
        with Session(self.engine) as session:
            result = session.execute(
                update(Credential)
                .where(
                    Credential.account_id == account_id,
                    Credential.version == version,
                    or_(col(Credential.lease_until).is_(None), Credential.lease_until < now),
                    or_(col(Credential.last_refresh_outcome).is_(None), Credential.last_refresh_outcome != DEAD_OUTCOME),
                )
                .values(lease_owner=owner, lease_until=now + lease_for, last_refresh_outcome=outcome_after_takeover())
            )
            session.commit()
            return result.rowcount == 1

    def renew_lease(
        self, account_id: str, version: int, owner: str, lease_for: timedelta, not_after: datetime | None = None
    ) -> bool:
        """Extend a lease we still hold (same owner, same version) to `lease_for` from now, never past `not_after`:
        before the provider call, and as the heartbeat while it is in flight. Every takeover, commit, release or
        death writes the owner or the version, so a matching row means nobody else took it, even if it ran out.
        False: the lease is gone; do not call (or, in flight, expect the commit to be refused)."""
        now = utcnow()
        until = now + lease_for if not_after is None else min(now + lease_for, not_after)
        with Session(self.engine) as session:
            result = session.execute(
                update(Credential)
                .where(Credential.account_id == account_id, Credential.version == version, Credential.lease_owner == owner)
                .values(lease_until=until)
            )
            session.commit()
            return result.rowcount == 1

    def drop_lease(self, account_id: str, version: int, owner: str) -> None:
        """Hand back a lease that was never used (shutdown before the provider call): no outcome, no failure."""
        with Session(self.engine) as session:
            session.execute(
                update(Credential)
                .where(Credential.account_id == account_id, Credential.version == version, Credential.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
            session.commit()

    def commit_refresh(
        self, account_id: str, owner: str, version: int, write: CredentialWrite, *, outcome: str = "ok"
    ) -> CredentialSnapshot | None:
        """Store rotated tokens as version+1, but only while we still hold the lease. None means the lease was lost.
        `outcome` other than ok: what the provider answered was stored because it must not be lost (a rotated
        refresh token), but the answer was defective; it counts as a failure."""
        sealed = self._seal_secrets(account_id, write.secrets)
        now = utcnow()
        with Session(self.engine) as session:
            result = session.execute(
                update(Credential)
                .where(
                    Credential.account_id == account_id,
                    Credential.lease_owner == owner,
                    Credential.version == version,
                )
                .values(
                    version=version + 1,
                    **self._written_values(sealed, write),
                    lease_owner=None,
                    lease_until=None,
                    consecutive_failures=0 if outcome == "ok" else Credential.consecutive_failures + 1,
                    last_refresh_at=now,
                    last_refresh_outcome=outcome,
                )
            )
            session.commit()
            if result.rowcount != 1:
                return None
        return self.read_credential(account_id)

    def release_lease(self, account_id: str, owner: str, *, outcome: str, retry_at: datetime | None = None) -> None:
        """Give the lease back after a failed refresh; `retry_at` pushes the next proactive attempt out."""
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "last_refresh_at": utcnow(),
            "last_refresh_outcome": outcome,
            "consecutive_failures": Credential.consecutive_failures + 1,
        }
        if retry_at is not None:
            values["refresh_due_at"] = retry_at
        with Session(self.engine) as session:
            session.execute(
                update(Credential).where(Credential.account_id == account_id, Credential.lease_owner == owner).values(**values)
            )
            session.commit()

    def mark_grant_dead(self, account_id: str, owner: str, version: int, status: AccountStatus, reason: str) -> bool:
        """The refresh token was refused: in one transaction the lease goes, the row is marked dead (so no worker
        presents that refresh token again) and the account's status says why — unless it already says why: a grant's
        first terminal reason stays its reason. False: we no longer hold the lease at `version` (another worker
        refreshed or holds it), and nothing changed."""
        now = utcnow()
        with Session(self.engine) as session:
            result = session.execute(
                update(Credential)
                .where(Credential.account_id == account_id, Credential.lease_owner == owner, Credential.version == version)
                .values(
                    lease_owner=None,
                    lease_until=None,
                    last_refresh_at=now,
                    last_refresh_outcome=DEAD_OUTCOME,
                    consecutive_failures=Credential.consecutive_failures + 1,
                    refresh_due_at=None,
                )  # nothing left to refresh: the scheduler must not claim it again
            )
            if result.rowcount != 1:
                session.rollback()
                return False
            session.execute(
                update(ConnectedAccount)
                .where(
                    ConnectedAccount.id == account_id,
                    col(ConnectedAccount.removed_at).is_(None),
                    col(ConnectedAccount.status).not_in(TERMINAL_STATUSES),
                )
                .values(status=status.value, status_reason=reason, updated_at=now)
            )
            session.commit()
            return True

    # ---- alert incidents ------------------------------------------------------------------------------
    def open_incident(self, account: str, incident: str, severity: str, webhook: WebhookEvent | None = None) -> bool:
        """True for the one caller (in the whole fleet) that opens it; False when it is already open.
        `webhook` is queued in the same transaction, so exactly the opener reports it."""
        with Session(self.engine) as session:
            session.add(AlertIncident(account=account, incident=incident, severity=severity))
            try:
                session.flush()  # the race is decided here, before anything else is written
                if webhook is not None:
                    enqueue(session, webhook)
                session.commit()
            except IntegrityError:
                return False
        return True

    def close_incidents(self, account: str, webhook: Callable[[str], WebhookEvent] | None = None) -> list[str]:
        """Close the account's open incidents; returns the ones this caller closed (so it alone says resolved).
        `webhook(incident)` is queued in the transaction that closes it."""
        closed = []
        with Session(self.engine) as session:
            names = session.exec(select(AlertIncident.incident).where(AlertIncident.account == account)).all()
            for name in names:
                result = session.execute(
                    delete(AlertIncident).where(AlertIncident.account == account, AlertIncident.incident == name)
                )
                if result.rowcount == 1 and webhook is not None:
                    enqueue(session, webhook(name))
                session.commit()
                if result.rowcount == 1:
                    closed.append(name)
        return closed

    # ---- key rotation --------------------------------------------------------------------------------
    def reseal_with_primary_key(self) -> dict[str, int]:
        """Re-seal every secret held under an older key with the primary (first) key, after a new key was put first
        in GRANTKEEPER_VAULT_KEY. Each row is a compare-and-set on what was read, so a refresh racing it wins.
        Returns counts: resealed credentials and link flows, credentials already under the primary key, and rows
        that would not open (left as they are)."""
        primary = self.keyring.primary_id
        counts = {"credentials": 0, "magic_link_flows": 0, "unreadable": 0, "credentials_current": 0}
        with Session(self.engine) as session:
            counts["credentials_current"] = session.execute(
                select(func.count()).select_from(Credential).where(Credential.key_id == primary)
            ).scalar_one()
            credentials = session.execute(
                select(Credential.account_id, Credential.version, Credential.key_id, Credential.ciphertext).where(
                    Credential.key_id != primary
                )
            ).all()
            flows = session.execute(
                select(MagicLink.id, MagicLink.flow_key_id, MagicLink.flow_ciphertext).where(
                    col(MagicLink.flow_key_id).is_not(None), MagicLink.flow_key_id != primary
                )
            ).all()
        for account_id, version, key_id, blob in credentials:
            aad = associated_data("credential", account_id, CREDENTIAL_FIELD)
            resealed = self._reseal(Sealed(key_id, blob), aad, counts)
            if resealed is not None:
                counts["credentials"] += self._update_where(
                    update(Credential)
                    .where(Credential.account_id == account_id, Credential.version == version, Credential.key_id == key_id)
                    .values(key_id=resealed.key_id, ciphertext=resealed.blob)
                )
        for link_id, key_id, blob in flows:
            resealed = self._reseal(Sealed(key_id, blob), associated_data("magic_link", link_id, "flow"), counts)
            if resealed is not None:
                counts["magic_link_flows"] += self._update_where(
                    update(MagicLink)
                    .where(MagicLink.id == link_id, MagicLink.flow_key_id == key_id)
                    .values(flow_key_id=resealed.key_id, flow_ciphertext=resealed.blob)
                )
        return counts

    def _reseal(self, sealed: Sealed, aad: bytes, counts: dict[str, int]) -> Sealed | None:
        try:
            return self.keyring.seal(self.keyring.open(sealed, aad), aad)
        except (VaultIntegrityError, VaultKeyError):
            counts["unreadable"] += 1
            return None

    def _update_where(self, statement: Any) -> int:
        with Session(self.engine) as session:
            result = session.execute(statement)
            session.commit()
            return result.rowcount

    # ---- magic links ---------------------------------------------------------------------------------
    def create_magic_link(
        self,
        *,
        token: str,
        account: ConnectedAccount,
        purpose: str,
        reason: str | None,
        ttl: timedelta,
        issued_by: str = "agent",
    ) -> MagicLink:
        link = MagicLink(
            token_hash=hash_token(token),
            account_id=account.id,
            purpose=purpose,
            org=account.org,
            user=account.user,
            reason=reason,
            expires_at=utcnow() + ttl,
            issued_by=issued_by,
        )
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(link)
            session.commit()
        return link

    def find_magic_link(self, token: str) -> MagicLink | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.exec(select(MagicLink).where(MagicLink.token_hash == hash_token(token))).first()

    def find_magic_link_by_state(self, state: str) -> MagicLink | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.exec(select(MagicLink).where(MagicLink.flow_state_hash == hash_token(state))).first()

    def begin_magic_link_flow(self, link_id: str, *, state: str, sealed_flow: Sealed) -> bool:
        """Compare-and-set: spend an unused, unexpired link on one authorization flow. False: someone was first,
        or the link expired meanwhile."""
        now = utcnow()
        with Session(self.engine) as session:
            result = session.execute(
                update(MagicLink)
                .where(MagicLink.id == link_id, col(MagicLink.used_at).is_(None), MagicLink.expires_at > now)
                .values(
                    used_at=now,
                    flow_state_hash=hash_token(state),
                    flow_key_id=sealed_flow.key_id,
                    flow_ciphertext=sealed_flow.blob,
                )
            )
            session.commit()
            return result.rowcount == 1

    def complete_magic_link_flow(
        self,
        link: MagicLink,
        *,
        provider_account_id: str,
        identity: dict[str, Any],
        scopes: Iterable[str],
        write: CredentialWrite,
        on_replaced: Callable[[Session, TokenSecrets], None] | None = None,
    ) -> ReauthorizationOutcome:
        """In one transaction: finish the link's flow (once), check the provider account is the account's own,
        install the new credentials, make the account active and retire the account's other open links.

        Every step is a compare-and-set, so a replayed callback or a concurrent one for another provider account
        changes nothing. `on_replaced` is handed the grant being replaced, in the same transaction (offboarding
        queues it for revocation there, so it can never be lost between the two)."""
        now = utcnow()
        with Session(self.engine) as session:
            finished = session.execute(
                update(MagicLink)
                .where(MagicLink.id == link.id, col(MagicLink.used_at).is_not(None), col(MagicLink.completed_at).is_(None))
                .values(completed_at=now)
            )
            if finished.rowcount != 1:
                session.rollback()
                return ReauthorizationOutcome.ALREADY_COMPLETED
            claimed = session.execute(
                update(ConnectedAccount)
                .where(
                    ConnectedAccount.id == link.account_id,
                    ConnectedAccount.org == link.org,
                    ConnectedAccount.user == link.user,
                    ConnectedAccount.status != AccountStatus.DISABLED.value,
                    or_(
                        col(ConnectedAccount.provider_account_id).is_(None),
                        ConnectedAccount.provider_account_id == provider_account_id,
                    ),
                )
                .values(
                    provider_account_id=provider_account_id,
                    provider_identity=identity,
                    scopes=" ".join(scopes),
                    status=AccountStatus.ACTIVE.value,
                    status_reason=refreshless_reason(write),
                    updated_at=now,
                    removed_at=None,
                    removed_by=None,
                )
            )
            if claimed.rowcount != 1:
                session.rollback()
                account = session.get(ConnectedAccount, link.account_id)
                if account is not None and account.status == AccountStatus.DISABLED.value:
                    return ReauthorizationOutcome.ACCOUNT_DISABLED
                return ReauthorizationOutcome.IDENTITY_MISMATCH
            replaced = session.get(Credential, link.account_id)
            if replaced is not None and on_replaced is not None:
                try:
                    on_replaced(session, self._open_secrets(replaced))
                except (VaultIntegrityError, VaultKeyError):
                    pass  # a credential that will not open cannot be revoked; it is replaced all the same
            self._install_credential(session, link.account_id, write)
            session.execute(
                update(MagicLink)
                .where(MagicLink.account_id == link.account_id, col(MagicLink.used_at).is_(None))
                .values(used_at=now)
            )
            session.commit()
        return ReauthorizationOutcome.COMPLETED

    def prune_magic_links(self, *, now: datetime, retention: timedelta, flow_ttl: timedelta, batch: int = 500) -> int:
        """Delete the links that can no longer do anything and have been dead for `retention`: never opened and
        expired, finished, or opened so long ago that their sign-in has expired too. Kept that long so a person
        opening an old link reads "expired" or "already used", not "not valid". Returns how many rows went.

        Deleted in batches by id, so a large backlog never holds one long lock."""
        cutoff = now - retention
        dead = or_(
            (col(MagicLink.used_at).is_(None)) & (MagicLink.expires_at < cutoff),
            col(MagicLink.completed_at) < cutoff,
            col(MagicLink.used_at) < cutoff - flow_ttl,
        )
        pruned = 0
        while True:
            with Session(self.engine) as session:
                ids = list(session.exec(select(MagicLink.id).where(dead).limit(batch)))
                if ids:
                    pruned += session.execute(delete(MagicLink).where(col(MagicLink.id).in_(ids))).rowcount
                    session.commit()
            if len(ids) < batch:
                return pruned

    # ---- API keys ------------------------------------------------------------------------------------
    def create_api_key(
        self, *, key: str, prefix: str, org: str, user: str, description: str | None, admin: bool = False
    ) -> ApiKey:
        row = ApiKey(key_hash=hash_token(key), prefix=prefix, org=org, user=user, description=description, admin=admin)
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(row)
            session.commit()
        return row

    def find_api_key(self, key: str) -> ApiKey | None:
        """The live (unrevoked) key with this value, looked up by hash."""
        with Session(self.engine, expire_on_commit=False) as session:
            return session.exec(
                select(ApiKey).where(ApiKey.key_hash == hash_token(key), col(ApiKey.revoked_at).is_(None))
            ).first()

    def list_api_keys(self, org: str | None = None, user: str | None = None) -> list[ApiKey]:
        with Session(self.engine, expire_on_commit=False) as session:
            statement = select(ApiKey).order_by(ApiKey.org, ApiKey.user, ApiKey.created_at)
            if org is not None:
                statement = statement.where(ApiKey.org == org)
            if user is not None:
                statement = statement.where(ApiKey.user == user)
            return list(session.exec(statement))

    def revoke_api_key(self, key_id_or_prefix: str) -> list[ApiKey]:
        """Revoke the live key with this id or printed prefix; returns what was revoked (empty: none matched).
        A prefix that matches several keys revokes none of them and returns them all, unrevoked."""
        with Session(self.engine, expire_on_commit=False) as session:
            matches = list(
                session.exec(
                    select(ApiKey).where(
                        or_(ApiKey.id == key_id_or_prefix, ApiKey.prefix == key_id_or_prefix), col(ApiKey.revoked_at).is_(None)
                    )
                )
            )
            if len(matches) != 1:
                return matches
            matches[0].revoked_at = utcnow()
            session.add(matches[0])
            session.commit()
            return matches

    # ---- events --------------------------------------------------------------------------------------
    def record_event(
        self, kind: str, *, account_id: str | None, severity: str = "info", webhook: WebhookEvent | None = None, **detail: Any
    ) -> None:
        """Store the event and, in the same transaction, the webhook messages that report it."""
        with Session(self.engine) as session:
            session.add(LifecycleEvent(kind=kind, account_id=account_id, severity=severity, detail=detail))
            if webhook is not None:
                enqueue(session, webhook)
            session.commit()

    def events(self, account_id: str | None = None, kind: str | None = None, limit: int = 100) -> list[LifecycleEvent]:
        with Session(self.engine, expire_on_commit=False) as session:
            statement = select(LifecycleEvent).order_by(col(LifecycleEvent.id).desc()).limit(limit)
            if account_id is not None:
                statement = statement.where(LifecycleEvent.account_id == account_id)
            if kind is not None:
                statement = statement.where(LifecycleEvent.kind == kind)
            return list(session.exec(statement))
