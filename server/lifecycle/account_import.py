"""Importing an account from tokens its owner already holds (`grantkeeper accounts add`): stored as a grant from
the provider would be, then the provider asked whose account it is.

    imported = import_account(runtime, AccountKey("acme", "alice", "slack"), held, replace=False)
    identity = await learn_provider_identity(runtime, imported)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.execute import ProbeOk
from server.lifecycle.grants import credential_write
from server.lifecycle.oauth import TokenGrant
from server.monitoring.webhook_events import lifecycle_webhook
from server.results import reason_of
from server.vault import NO_REFRESH_TOKEN, AccountExistsError, AccountStatus, ConnectedAccount, CredentialWrite
from server.vault.credentials import refreshless_reason
from server.vault.threads import in_vault_thread

if TYPE_CHECKING:
    from server.runtime import Runtime


@dataclass(frozen=True)
class AccountKey:
    org: str
    user: str
    connector: str
    label: str = "default"


@dataclass(frozen=True)
class HeldTokens:
    """What the owner hands over: at least an access token; its expiry as a lifetime or a moment (a moment in the
    past stores the token as expired, so the first call refreshes it)."""

    access_token: str
    refresh_token: str | None = None
    token_type: str | None = None
    expires_in: float | None = None
    expires_at: datetime | None = None
    refresh_token_expires_in: float | None = None
    scope: str | None = None
    provider_account_id: str | None = None

    def lifetime(self, now: datetime) -> float | None:
        return (self.expires_at - now).total_seconds() if self.expires_at is not None else self.expires_in


class AccountAlreadyConnected(Exception):
    """The account exists and holds a grant; importing over it needs `replace`."""


@dataclass(frozen=True)
class ImportedAccount:
    account: ConnectedAccount
    credential: CredentialWrite
    # The imported access token had already expired: the provider is not asked with it.
    expired: bool
    # Whose account it is, as the owner said or as the account already knew (replacing); None: ask the provider.
    provider_account_id: str | None

    @property
    def refreshless(self) -> bool:
        """No refresh token, and the access token expires: the account will need its user again."""
        return refreshless_reason(self.credential) is not None


def import_account(
    runtime: Runtime, key: AccountKey, held: HeldTokens, *, replace: bool, now: datetime | None = None
) -> ImportedAccount:
    """Store `held` as `key`'s credential and make the account active. A pending account (a link not yet
    completed) is taken over; an existing one only with `replace`. Blocking (vault calls)."""
    vault = runtime.vault
    now = now or datetime.now(UTC)
    lifetime = held.lifetime(now)
    grant = TokenGrant(
        access_token=held.access_token,
        refresh_token=held.refresh_token,
        token_type=held.token_type or "bearer",
        expires_in=lifetime,
        refresh_expires_in=held.refresh_token_expires_in,
        scope=held.scope,
        provider_account_id=held.provider_account_id,
        identity={},
    )
    connector = runtime.connectors[key.connector]
    write = credential_write(connector, grant, now, refresh_at_fraction=runtime.settings.refresh_at_fraction)
    scopes = (held.scope or "").replace(",", " ").split()
    try:
        account = vault.accounts.create(
            org=key.org,
            user=key.user,
            connector=key.connector,
            label=key.label,
            provider_account_id=grant.provider_account_id,
            scopes=scopes,
        )
    except AccountExistsError:
        existing = vault.accounts.find(key.org, key.user, key.connector, key.label)
        if existing is None or (not replace and existing.status != AccountStatus.PENDING):
            raise AccountAlreadyConnected(f"{key.org}/{key.user}/{key.connector}") from None
        account = existing
        vault.accounts.update_identity(
            account.id,
            grant.provider_account_id or account.provider_account_id,
            account.provider_identity,
            scopes or account.scopes.split(),
        )
    vault.credentials.put(account.id, write)
    vault.accounts.set_status(account.id, AccountStatus.ACTIVE, refreshless_reason(write))
    vault.events.record(
        "account_imported",
        account_id=account.id,
        connector=key.connector,
        webhook=lifecycle_webhook("account_imported", account, "info", {}),
    )
    if refreshless_reason(write):
        vault.events.record(
            "refresh_token_missing",
            account_id=account.id,
            severity="warning",
            reason=NO_REFRESH_TOKEN,
            needs_user_at=write.access_expires_at.isoformat() if write.access_expires_at else None,
        )
    known = grant.provider_account_id or (account.provider_account_id if replace else None)
    return ImportedAccount(
        vault.accounts.get(account.id), write, expired=bool(lifetime and lifetime <= 0), provider_account_id=known
    )


@dataclass(frozen=True)
class ProviderIdentity:
    provider_account_id: str | None
    # Why it stays unknown: "expired" (the token was not used), "not_named" (the provider's check names no
    # account), or the status the provider's answer was classified as.
    unknown_because: str | None = None
    reason: str | None = None


async def learn_provider_identity(runtime: Runtime, imported: ImportedAccount) -> ProviderIdentity:
    """A reconnect link must not attach someone else's account, so the account should know whose it is. Ask the
    provider (its health probe) with the imported token and record the answer; an expired token is not refreshed
    just for this."""
    if imported.provider_account_id:
        return ProviderIdentity(imported.provider_account_id)
    if imported.expired:
        return ProviderIdentity(None, "expired")
    account = imported.account
    result = await runtime.executor.probe(account)
    if isinstance(result, ProbeOk) and result.provider_account_id:
        await in_vault_thread(
            runtime.vault.accounts.update_identity,
            account.id,
            result.provider_account_id,
            account.provider_identity,
            account.scopes.split(),
        )
        return ProviderIdentity(result.provider_account_id)
    if isinstance(result, ProbeOk):
        return ProviderIdentity(None, "not_named")
    return ProviderIdentity(None, result.status, reason_of(result))
