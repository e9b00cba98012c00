"""Every account's health as the console shows it (dashboard, /accounts, `grantkeeper status`): status and reason,
expiries, the last refresh, failures, the last health check, the upstream revocation of a removed account, and the
next action in words. Read from the vault's plain columns only: no ciphertext is opened here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from server.connectors import Connector
from server.vault import NO_REFRESH_TOKEN, AccountStatus, ConnectedAccount, Vault
from server.vault.models import AlertIncident, Credential
from server.vault.revocations import REMOVED, Revocations

# What a status reason means, in words an operator acts on ({provider} is the provider's display name).
REASONS = {
    "token_revoked": "the user revoked access at {provider}",
    "refresh_token_revoked": "{provider} no longer accepts the grant (revoked or expired)",
    "token_rejected": "{provider} rejected the token even after a refresh",
    "refresh_interrupted": "a refresh was interrupted, so the grant may already be spent",
    "access_token_expired": "the grant expired and had no refresh token",
    "not_connected": "the account was never connected",
    "requested": "a reconnect was requested",
}


@dataclass(frozen=True)
class AccountRow:
    id: str
    org: str
    user: str
    connector: str
    label: str
    name: str  # org/user/connector[/label]
    status: str
    reason: str | None
    needs_action: bool
    next_action: str
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    last_refresh_at: datetime | None
    last_refresh_outcome: str | None
    consecutive_failures: int
    health_checked_at: datetime | None
    removed_at: datetime | None
    removed_by: str | None
    revocation: str | None  # the latest upstream revocation: pending | done | unsupported
    revocation_attempts: int
    revocation_error: str | None

    def as_json(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class RefreshHistory:
    """The plain columns of an account's credential that the console shows (never the ciphertext)."""

    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    last_refresh_at: datetime | None
    last_refresh_outcome: str | None
    consecutive_failures: int


def account_rows(
    vault: Vault, connectors: dict[str, Connector], *, org: str | None = None, user: str | None = None
) -> list[AccountRow]:
    accounts = vault.accounts.all(org, user)
    statement = select_columns(
        col(Credential.account_id),
        col(Credential.access_expires_at),
        col(Credential.refresh_expires_at),
        col(Credential.last_refresh_at),
        col(Credential.last_refresh_outcome),
        col(Credential.consecutive_failures),
    )
    with Session(vault.engine) as session:
        credentials = {
            account_id: RefreshHistory(access_expires_at, refresh_expires_at, last_refresh_at, outcome, failures)
            for account_id, access_expires_at, refresh_expires_at, last_refresh_at, outcome, failures in session.execute(
                statement
            )
        }
    revocations = Revocations(vault).latest_by_account()
    rows = []
    for account in accounts:
        credential = credentials.get(account.id)
        revocation = revocations.get(account.id)
        connector = connectors.get(account.connector)
        needs_action, next_action = next_step(account, connector, credential)
        rows.append(
            AccountRow(
                id=account.id,
                org=account.org,
                user=account.user,
                connector=account.connector,
                label=account.label,
                name=account.display_name,
                status=account.status,
                reason=account.status_reason,
                needs_action=needs_action,
                next_action=next_action,
                access_expires_at=credential.access_expires_at if credential else None,
                refresh_expires_at=credential.refresh_expires_at if credential else None,
                last_refresh_at=credential.last_refresh_at if credential else None,
                last_refresh_outcome=credential.last_refresh_outcome if credential else None,
                consecutive_failures=credential.consecutive_failures if credential else 0,
                health_checked_at=account.health_checked_at,
                removed_at=account.removed_at,
                removed_by=account.removed_by,
                revocation=revocation.state if revocation else None,
                revocation_attempts=revocation.attempts if revocation else 0,
                revocation_error=revocation.last_error if revocation else None,
            )
        )
    return rows


def next_step(account: ConnectedAccount, connector: Connector | None, credential: RefreshHistory | None) -> tuple[bool, str]:
    """(whether someone must act, what to do, in words)."""
    provider = connector.spec.display_name if connector else account.connector
    reason = account.status_reason
    if connector is None:
        return True, f"configure the {account.connector} connector again, or remove the account"
    if connector.missing_base_url:
        return True, f"set GRANTKEEPER_{connector.name.upper()}_API_BASE_URL"
    match account.status:
        case AccountStatus.DISABLED.value:
            return False, "disabled by an operator: enable it when it should work again"
        case AccountStatus.PENDING.value:
            return False, f"waiting for {account.user} to connect it: send a connect link"
        case AccountStatus.REAUTH_REQUIRED.value if reason == REMOVED:
            return False, "removed: nothing to do (a reconnect link brings it back)"
        case AccountStatus.REAUTH_REQUIRED.value:
            why = REASONS.get(reason or "", f"{provider} refused the grant ({reason or 'no reason recorded'})")
            return True, f"reconnect — {why.format(provider=provider)}"
        case AccountStatus.ADMIN_ACTION_REQUIRED.value:
            if reason == "vault_integrity_failed":
                return True, "the stored credential failed its integrity check: check GRANTKEEPER_VAULT_KEY, or reconnect"
            if reason in ("client_misconfigured", "invalid_client"):
                return True, (
                    f"check GRANTKEEPER_{connector.name.upper()}_CLIENT_ID and _CLIENT_SECRET: "
                    f"{provider} refused the OAuth client"
                )
            return True, f"an administrator must act at {provider} ({reason or 'no reason recorded'})"
    if not connector.configured:
        return True, f"set GRANTKEEPER_{connector.name.upper()}_CLIENT_ID and _CLIENT_SECRET"
    if reason == NO_REFRESH_TOKEN:
        return False, f"reconnect before the access token expires: {provider} gave no refresh token"
    if credential is not None and credential.consecutive_failures:
        return False, (
            f"refreshes are failing ({credential.consecutive_failures} in a row, last "
            f"{credential.last_refresh_outcome}); retried automatically — watch {provider}'s status"
        )
    return False, "nothing to do"


def open_incidents(vault: Vault) -> list[AlertIncident]:
    with Session(vault.engine, expire_on_commit=False) as session:
        return list(session.exec(select(AlertIncident).order_by(col(AlertIncident.opened_at))))
