"""Put accounts into a vault with tokens a simulator minted: one the way `grantkeeper accounts add` does
(`seed_account`), or thousands in bulk for a fleet (`seed_many`) — for tests, benchmarks and trying grantkeeper out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from server.connectors import load_connectors
from server.lifecycle.grants import credential_write
from server.lifecycle.oauth import TokenGrant
from server.settings import Settings
from server.vault import AccountStatus, ConnectedAccount, TokenSecrets, Vault
from server.vault.credentials import seal_secrets
from server.vault.models import Credential, new_id
from simulators import TokenSet


def seed_account(
    settings: Settings,
    vault: Vault,
    connector: str,
    tokens: TokenSet,
    *,
    org: str = "acme",
    user: str = "alice",
    expired: bool = False,
    lifetime_used: float | None = None,
    provider_account_id: str | None = None,
    label: str = "default",
) -> ConnectedAccount:
    """Store `tokens` for org/user. `expired`: our copy says the access token already expired.
    `lifetime_used`: the fraction of the token's lifetime that has already passed.
    `provider_account_id`: the provider account the vault records for it (re-authorization must match it)."""
    connectors = load_connectors(settings)
    lifetime = tokens.expires_in or 3600
    now = datetime.now(UTC)
    issued_at = now
    if expired:
        issued_at = now - timedelta(seconds=lifetime + 60)
    elif lifetime_used is not None:
        issued_at = now - timedelta(seconds=lifetime * lifetime_used)
    grant = TokenGrant(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="bearer",
        expires_in=lifetime,
        refresh_expires_in=tokens.refresh_token_expires_in,
        scope=" ".join(tokens.scopes),
        provider_account_id=None,
        identity={},
    )
    write = credential_write(connectors[connector], grant, issued_at, refresh_at_fraction=settings.refresh_at_fraction)
    if lifetime_used is not None:
        # Without jitter, so the test knows which side of the due time it is on.
        write = type(write)(
            **{**write.__dict__, "refresh_due_at": issued_at + timedelta(seconds=lifetime * settings.refresh_at_fraction)}
        )
    account = vault.accounts.find(org, user, connector, label) or vault.accounts.create(
        org=org,
        user=user,
        connector=connector,
        label=label,
        scopes=tokens.scopes,
        provider_account_id=provider_account_id,
        provider_identity=dict(tokens.identity) if provider_account_id else None,
    )
    vault.credentials.put(account.id, write)
    return account


def seed_many(
    settings: Settings,
    vault: Vault,
    connector: str,
    grants: Iterable[TokenSet | tuple[str, str]],
    *,
    lifetime: float,
    lifetime_used: float,
    org: str = "fleet",
    user_prefix: str = "user",
    start: int = 0,
    chunk: int = 5000,
) -> list[str]:
    """Insert many accounts with sealed credentials in bulk (tests and benchmarks of the fleet).

    `grants`: simulator token sets, or (access, refresh) pairs nobody will ever present. Every credential was
    issued `lifetime_used` of its `lifetime` ago, with its refresh due at exactly `refresh_at_fraction` (no jitter).
    Returns the account ids, in order."""
    now = datetime.now(UTC)
    issued_at = now - timedelta(seconds=lifetime * lifetime_used)
    due_at = issued_at + timedelta(seconds=lifetime * settings.refresh_at_fraction)
    health_due_at = now + timedelta(seconds=settings.health_check_interval_seconds)
    ids: list[str] = []
    accounts: list[dict] = []
    credentials: list[dict] = []

    def flush() -> None:
        with vault.engine.begin() as connection:
            connection.execute(insert(ConnectedAccount), accounts)
            connection.execute(insert(Credential), credentials)
        accounts.clear()
        credentials.clear()

    for number, grant in enumerate(grants, start=start):
        access, refresh = (grant.access_token, grant.refresh_token) if isinstance(grant, TokenSet) else grant
        account_id = new_id()
        ids.append(account_id)
        accounts.append(
            {
                "id": account_id,
                "org": org,
                "user": f"{user_prefix}{number:06d}",
                "connector": connector,
                "label": "default",
                "status": AccountStatus.ACTIVE.value,
                "status_reason": None,
                "provider_account_id": None,
                "provider_identity": {},
                "scopes": "",
                "created_at": now,
                "updated_at": now,
                "health_due_at": health_due_at,
                "health_checked_at": None,
            }
        )
        sealed = seal_secrets(vault.keyring, account_id, TokenSecrets(access, refresh))
        credentials.append(
            {
                "account_id": account_id,
                "key_id": sealed.key_id,
                "ciphertext": sealed.blob,
                "version": 1,
                "token_type": "bearer",
                "issued_at": issued_at,
                "access_expires_at": issued_at + timedelta(seconds=lifetime),
                "refresh_due_at": due_at,
                "refresh_expires_at": None,
                "lease_owner": None,
                "lease_until": None,
                "consecutive_failures": 0,
                "last_refresh_at": None,
                "last_refresh_outcome": None,
            }
        )
        if len(accounts) >= chunk:
            flush()
    if accounts:
        flush()
    return ids
