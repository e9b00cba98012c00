"""Connected accounts: who (org, user) holds which connector under which label, and the account's status."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, exists, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from server.vault.models import AccountStatus, ConnectedAccount, Credential, utcnow
from server.vault.sessions import change, open_session

# Statuses whose reason is the grant's first, true one: later failures of the same dead grant do not rewrite it.
TERMINAL_STATUSES = (AccountStatus.REAUTH_REQUIRED.value, AccountStatus.DISABLED.value)
# The status reason of an active account whose grant came without a refresh token: it works until its access
# token expires, then needs its user. Shown, alerted and offered a reconnect link; never plain `active`.
NO_REFRESH_TOKEN = "no_refresh_token"


class AccountExistsError(ValueError):
    pass


class UnknownAccountError(LookupError):
    pass


class Accounts:
    """`vault.accounts`: create, look up and list accounts, and change their status."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(
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
        with open_session(self.engine) as session:
            session.add(account)
            try:
                session.commit()
            except IntegrityError:
                raise AccountExistsError(f"account {account.display_name} already exists") from None
        return account

    def find(self, org: str, user: str, connector: str, label: str = "default") -> ConnectedAccount | None:
        with open_session(self.engine) as session:
            statement = select(ConnectedAccount).where(
                col(ConnectedAccount.org) == org,
                col(ConnectedAccount.user) == user,
                col(ConnectedAccount.connector) == connector,
                col(ConnectedAccount.label) == label,
            )
            return session.exec(statement).first()

    def get(self, account_id: str) -> ConnectedAccount:
        """The account with this id; UnknownAccountError when there is none."""
        with open_session(self.engine) as session:
            account = session.get(ConnectedAccount, account_id)
        if account is None:
            raise UnknownAccountError(f"no account with id {account_id}")
        return account

    def all(self, org: str | None = None, user: str | None = None) -> list[ConnectedAccount]:
        """Every account (of `org`, of `user`), ordered by org, user, connector and label."""
        with open_session(self.engine) as session:
            statement = select(ConnectedAccount).order_by(
                col(ConnectedAccount.org),
                col(ConnectedAccount.user),
                col(ConnectedAccount.connector),
                col(ConnectedAccount.label),
            )
            if org is not None:
                statement = statement.where(col(ConnectedAccount.org) == org)
            if user is not None:
                statement = statement.where(col(ConnectedAccount.user) == user)
            return list(session.exec(statement))

    def set_status(
        self, account_id: str, status: AccountStatus, reason: str | None = None, *, credential_version: int | None = None
    ) -> bool:
        """Returns whether the status changed (so the caller records one event per change, not per call). A removed
        account keeps saying `removed` (a worker still holding its old token may see it refused meanwhile); only a
        completed reconnect brings it back. With `credential_version` (a provider's verdict on the token a call
        used) nothing changes once the credential moved past that version: a reconnect or a refresh came after."""
        conditions = [
            col(ConnectedAccount.id) == account_id,
            col(ConnectedAccount.removed_at).is_(None),
            or_(col(ConnectedAccount.status) != status.value, col(ConnectedAccount.status_reason).is_distinct_from(reason)),
        ]
        if credential_version is not None:
            conditions.append(
                exists().where(col(Credential.account_id) == account_id, col(Credential.version) == credential_version)
            )
        if status == AccountStatus.REAUTH_REQUIRED:
            conditions.append(col(ConnectedAccount.status).not_in(TERMINAL_STATUSES))  # the first reason stays
        changed = change(
            self.engine,
            update(ConnectedAccount).where(*conditions).values(status=status.value, status_reason=reason, updated_at=utcnow()),
        )
        return changed == 1

    def update_identity(
        self, account_id: str, provider_account_id: str | None, identity: dict[str, Any], scopes: Iterable[str]
    ) -> None:
        change(
            self.engine,
            update(ConnectedAccount)
            .where(col(ConnectedAccount.id) == account_id)
            .values(
                provider_account_id=provider_account_id,
                provider_identity=identity,
                scopes=" ".join(scopes),
                updated_at=utcnow(),
            ),
        )
