"""Which lifecycle events and alerts become webhooks, under which Standard Webhooks event type, with what data.

The data names the account and says what happened; it is built from an allow-list of detail keys, so nothing
added to an event later (let alone a secret) reaches a receiver by accident.
"""

from __future__ import annotations

from typing import Any

from server.vault.models import ConnectedAccount
from server.vault.outbox import WebhookEvent

EVENT_TYPES = (
    "account.connected",
    "account.reauthorized",
    "account.reauth_required",
    "account.refresh_failed",
    "account.recovered",
    "account.removed",
    "alert.opened",
    "alert.resolved",
)
TEST_EVENT_TYPE = "webhook.test"  # sent by `grantkeeper webhooks test` only, never queued
DETAIL_KEYS = (
    "reason",
    "trigger",
    "status",
    "purpose",
    "previous_reason",
    "provider_error",
    "outcome",
    "after_failures",
    "retry_at",
    "link_id",
    "link_expires_at",
    "refresh_expires_at",
    "next_step",
    "needs_user_at",
)


def webhook_type(kind: str, detail: dict[str, Any]) -> str | None:
    """The webhook event type a lifecycle event kind is reported as (None: not reported)."""
    if kind == "reauthorized":
        return "account.connected" if detail.get("purpose") == "connect" else "account.reauthorized"
    if kind == "refresh_succeeded":
        return "account.recovered" if detail.get("after_failures") else None
    if kind == "status_changed":
        return "account.recovered" if detail.get("status") == "active" else None
    return {
        "account_imported": "account.connected",
        "reauth_required": "account.reauth_required",
        "refresh_failed": "account.refresh_failed",
        "account_removed": "account.removed",
        "refresh_token_expiring": "account.reauth_required",
        "reconnect_due": "account.reauth_required",
    }.get(kind)


def account_data(account: ConnectedAccount) -> dict[str, Any]:
    return {"id": account.id, "org": account.org, "user": account.user, "connector": account.connector, "label": account.label}


def lifecycle_webhook(kind: str, account: ConnectedAccount | None, severity: str, detail: dict[str, Any]) -> WebhookEvent | None:
    event_type = webhook_type(kind, detail)
    if event_type is None:
        return None
    data: dict[str, Any] = {
        "event": kind,
        "severity": severity,
        **{key: _plain(detail[key]) for key in DETAIL_KEYS if detail.get(key) is not None},
    }
    if account is not None:
        data["account"] = account_data(account)
    return WebhookEvent(event_type, account.id if account else None, data)


def alert_webhook(
    opened: bool,
    account: ConnectedAccount | None,
    display_name: str,
    incident: str,
    severity: str,
    summary: str,
    reason: Any = None,
) -> WebhookEvent:
    data: dict[str, Any] = {
        "alert": incident,
        "severity": severity,
        "summary": summary,
        "account": account_data(account) if account else {"name": display_name},
    }
    if reason is not None:
        data["reason"] = _plain(reason)
    return WebhookEvent("alert.opened" if opened else "alert.resolved", account.id if account else None, data)


def _plain(value: Any) -> Any:
    """JSON-safe scalars only: datetimes as ISO text, anything else as a short string."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)[:200]
