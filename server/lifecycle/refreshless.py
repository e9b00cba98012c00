"""Accounts connected without a refresh token: they work until the access token expires, then need their user.
When that is, how to say it, and when a reconnect link is offered ahead of it (`reconnect_ahead_seconds`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from server.settings import Settings
from server.vault import NO_REFRESH_TOKEN, AccountStatus, ConnectedAccount


def needs_user_at(account: ConnectedAccount, timings: dict[str, Any] | None) -> datetime | None:
    """When the account stops working without its user; None for a grant that refreshes itself."""
    if account.status != AccountStatus.ACTIVE.value or account.status_reason != NO_REFRESH_TOKEN or not timings:
        return None
    return timings.get("access_expires_at")


def reconnect_due(settings: Settings, at: datetime | None, now: datetime) -> bool:
    """Whether a reconnect link should be offered now: within `reconnect_ahead_seconds` of `at`."""
    return at is not None and now >= at - timedelta(seconds=settings.reconnect_ahead_seconds)


def describe(at: datetime | None) -> str:
    when = f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "the access token's expiry"
    return f"no refresh token: will need the user at {when}"
