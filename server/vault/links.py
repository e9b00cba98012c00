"""Magic links: single-use, expiring links that send a person through an authorization flow to (re)connect an
account. Only hashes of the link token and of the flow's state are stored; the flow itself is sealed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, or_, update
from sqlmodel import Session, col, select

from server.vault.credentials import Credentials, CredentialWrite, TokenSecrets, open_secrets, refreshless_reason
from server.vault.crypto import Sealed, VaultIntegrityError, VaultKeyError, hash_token
from server.vault.models import AccountStatus, ConnectedAccount, Credential, MagicLink, utcnow
from server.vault.sessions import change, open_session, rows_changed


class ReauthorizationOutcome(StrEnum):
    COMPLETED = "completed"
    ALREADY_COMPLETED = "already_completed"
    IDENTITY_MISMATCH = "identity_mismatch"
    ACCOUNT_DISABLED = "account_disabled"


def _new_link(
    token: str, account: ConnectedAccount, purpose: str, reason: str | None, ttl: timedelta, issued_by: str
) -> MagicLink:
    return MagicLink(
        token_hash=hash_token(token),
        account_id=account.id,
        purpose=purpose,
        org=account.org,
        user=account.user,
        reason=reason,
        expires_at=utcnow() + ttl,
        issued_by=issued_by,
    )


def _open_links(account_id: str, reason: str, now: datetime) -> Any:
    """The account's links for `reason` that can still be opened (unused, unexpired), newest first."""
    return (
        select(MagicLink)
        .where(
            col(MagicLink.account_id) == account_id,
            col(MagicLink.reason) == reason,
            col(MagicLink.used_at).is_(None),
            col(MagicLink.expires_at) > now,
        )
        .order_by(col(MagicLink.created_at).desc())
    )


class MagicLinks:
    """`vault.links`: issue a link, spend it on one authorization flow, complete the flow, prune dead links."""

    def __init__(self, engine: Engine, credentials: Credentials):
        self.engine = engine
        self.credentials = credentials  # a completed flow installs its grant in the same transaction

    def create(
        self,
        *,
        token: str,
        account: ConnectedAccount,
        purpose: str,
        reason: str | None,
        ttl: timedelta,
        issued_by: str = "agent",
    ) -> MagicLink:
        link = _new_link(token, account, purpose, reason, ttl, issued_by)
        with open_session(self.engine) as session:
            session.add(link)
            session.commit()
        return link

    def create_unless_active(
        self, *, token: str, account: ConnectedAccount, purpose: str, reason: str, ttl: timedelta, issued_by: str = "agent"
    ) -> MagicLink | None:
        """As `create`, unless the account is working again (then None). The status is checked by a write to the
        account's row in the link's own transaction, so it and a completing reconnect (which writes that row and
        retires the open links) happen one after the other: no link outlives the reconnect it was meant for."""
        not_working = col(ConnectedAccount.status) != AccountStatus.ACTIVE.value
        return self._create_holding_account(_new_link(token, account, purpose, reason, ttl, issued_by), not_working)

    def create_unless_open(
        self,
        *,
        token: str,
        account: ConnectedAccount,
        purpose: str,
        reason: str,
        ttl: timedelta,
        issued_by: str,
    ) -> MagicLink | None:
        """As `create`, unless the account already has an open link for `reason` (then None). The look and the
        insert are one transaction that first takes the account's row for writing, so callers asking at the same
        moment — in this process or another — make one link between them."""
        return self._create_holding_account(
            _new_link(token, account, purpose, reason, ttl, issued_by),
            unless=lambda session: session.exec(_open_links(account.id, reason, utcnow())).first() is not None,
        )

    def _create_holding_account(
        self,
        link: MagicLink,
        *where: ColumnElement[bool],
        unless: Callable[[Session], bool] = lambda session: False,
    ) -> MagicLink | None:
        """Insert `link` in a transaction that first takes its account's row for writing, where `where` holds — a
        write that changes nothing: PostgreSQL locks the row, SQLite the database, until this commits — unless the
        row did not match or `unless` says so then (None)."""
        with open_session(self.engine) as session:
            taken = rows_changed(
                session,
                update(ConnectedAccount).where(col(ConnectedAccount.id) == link.account_id, *where).values(id=link.account_id),
            )
            if taken == 0 or unless(session):
                session.rollback()
                return None
            session.add(link)
            session.commit()
        return link

    def find(self, token: str) -> MagicLink | None:
        with open_session(self.engine) as session:
            return session.exec(select(MagicLink).where(col(MagicLink.token_hash) == hash_token(token))).first()

    def open_link(self, account_id: str, reason: str, *, now: datetime) -> MagicLink | None:
        """The account's newest link for `reason` that can still be opened (unused, unexpired), if any: a caller
        that wants one live link per cause issues another only without it."""
        with open_session(self.engine) as session:
            return session.exec(_open_links(account_id, reason, now)).first()

    def find_by_state(self, state: str) -> MagicLink | None:
        with open_session(self.engine) as session:
            return session.exec(select(MagicLink).where(col(MagicLink.flow_state_hash) == hash_token(state))).first()

    def begin_flow(self, link_id: str, *, state: str, sealed_flow: Sealed) -> bool:
        """Compare-and-set: spend an unused, unexpired link on one authorization flow. False: someone was first,
        or the link expired meanwhile."""
        now = utcnow()
        spent = change(
            self.engine,
            update(MagicLink)
            .where(col(MagicLink.id) == link_id, col(MagicLink.used_at).is_(None), col(MagicLink.expires_at) > now)
            .values(
                used_at=now,
                flow_state_hash=hash_token(state),
                flow_key_id=sealed_flow.key_id,
                flow_ciphertext=sealed_flow.blob,
            ),
        )
        return spent == 1

    def complete_flow(
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
        with open_session(self.engine) as session:
            finished = rows_changed(
                session,
                update(MagicLink)
                .where(col(MagicLink.id) == link.id, col(MagicLink.used_at).is_not(None), col(MagicLink.completed_at).is_(None))
                .values(completed_at=now),
            )
            if finished != 1:
                session.rollback()
                return ReauthorizationOutcome.ALREADY_COMPLETED
            claimed = rows_changed(
                session,
                update(ConnectedAccount)
                .where(
                    col(ConnectedAccount.id) == link.account_id,
                    col(ConnectedAccount.org) == link.org,
                    col(ConnectedAccount.user) == link.user,
                    col(ConnectedAccount.status) != AccountStatus.DISABLED.value,
                    or_(
                        col(ConnectedAccount.provider_account_id).is_(None),
                        col(ConnectedAccount.provider_account_id) == provider_account_id,
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
                ),
            )
            if claimed != 1:
                session.rollback()
                account = session.get(ConnectedAccount, link.account_id)
                if account is not None and account.status == AccountStatus.DISABLED.value:
                    return ReauthorizationOutcome.ACCOUNT_DISABLED
                return ReauthorizationOutcome.IDENTITY_MISMATCH
            replaced = session.get(Credential, link.account_id)
            if replaced is not None and on_replaced is not None:
                try:
                    on_replaced(session, open_secrets(self.credentials.keyring, replaced))
                except (VaultIntegrityError, VaultKeyError):
                    pass  # a credential that will not open cannot be revoked; it is replaced all the same
            self.credentials.install(session, link.account_id, write)
            session.execute(
                update(MagicLink)
                .where(col(MagicLink.account_id) == link.account_id, col(MagicLink.used_at).is_(None))
                .values(used_at=now)
            )
            session.commit()
        return ReauthorizationOutcome.COMPLETED

    def prune(self, *, now: datetime, retention: timedelta, flow_ttl: timedelta, batch: int = 500) -> int:
        """Delete the links that can no longer do anything and have been dead for `retention`: never opened and
        expired, finished, or opened so long ago that their sign-in has expired too. Kept that long so a person
        opening an old link reads "expired" or "already used", not "not valid". Returns how many rows went.

        Deleted in batches by id, so a large backlog never holds one long lock."""
        cutoff = now - retention
        dead = or_(
            col(MagicLink.used_at).is_(None) & (col(MagicLink.expires_at) < cutoff),
            col(MagicLink.completed_at) < cutoff,
            col(MagicLink.used_at) < cutoff - flow_ttl,
        )
        pruned = 0
        while True:
            with open_session(self.engine) as session:
                ids = list(session.exec(select(MagicLink.id).where(dead).limit(batch)))
                if ids:
                    pruned += rows_changed(session, delete(MagicLink).where(col(MagicLink.id).in_(ids)))
                    session.commit()
            if len(ids) < batch:
                return pruned
