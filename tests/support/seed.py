"""Put an account into a vault the way `grantkeeper accounts add` does, with tokens minted by a simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from providers.simulators import TokenSet
from server.connectors import load_connectors
from server.lifecycle.oauth import TokenGrant
from server.lifecycle.tokens import TokenManager
from server.monitoring.events import EventRecorder
from server.settings import Settings
from server.vault import ConnectedAccount, Vault


def seed_account(
    settings: Settings, vault: Vault, connector: str, tokens: TokenSet, *, org: str = "acme", user: str = "alice",
    expired: bool = False, lifetime_used: float | None = None, provider_account_id: str | None = None,
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
        access_token=tokens.access_token, refresh_token=tokens.refresh_token, token_type="bearer",
        expires_in=lifetime, refresh_expires_in=tokens.refresh_token_expires_in, scope=" ".join(tokens.scopes),
        provider_account_id=None, identity={},
    )
    manager = TokenManager(settings, vault, connectors, EventRecorder(vault))
    write = manager.credential_write(connectors[connector], grant, issued_at)
    if lifetime_used is not None:
        # Without jitter, so the test knows which side of the due time it is on.
        write = type(write)(**{**write.__dict__,
                               "refresh_due_at": issued_at + timedelta(seconds=lifetime * settings.refresh_at_fraction)})
    account = vault.find_account(org, user, connector) or vault.create_account(
        org=org, user=user, connector=connector, scopes=tokens.scopes, provider_account_id=provider_account_id,
        provider_identity=dict(tokens.identity) if provider_account_id else None)
    vault.put_credential(account.id, write)
    return account
