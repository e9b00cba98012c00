"""Renewing, ahead of time, a grant whose refresh token has a fixed end: when that end is near enough to announce
(`ending_soon`), and the reauth link that renews it on the same account (`renewal_link`), one live link at a time.

A link is a secret and only its hash is stored, so its URL can be shown once, to whoever asked for it
(`grantkeeper check`, or the owner's agent in `accounts.list`); the announcement (`refresh_token_expiring`, a
webhook) names the way to one, never a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.execute import Executor, MagicLinkIssued
from server.settings import Settings
from server.vault import ConnectedAccount, Vault
from server.vault.models import MagicLink, utcnow
from server.vault.threads import in_vault_thread

RENEWAL_REASON = "refresh_token_expiring"  # the event kind and the link's reason alike


def ending_soon(settings: Settings, timings: dict[str, Any] | None, now: datetime) -> datetime | None:
    """The refresh token's fixed end once it is within `refresh_expiry_warning_seconds` of it, or within half a
    shorter lifetime; None for a refresh token without a fixed end or with time enough left."""
    if timings is None or timings.get("refresh_expires_at") is None:
        return None
    expires_at, issued_at = timings["refresh_expires_at"], timings["issued_at"]
    lifetime = (expires_at - issued_at).total_seconds()
    ahead = min(settings.refresh_expiry_warning_seconds, max(lifetime, 0) / 2)
    return expires_at if now >= expires_at - timedelta(seconds=ahead) else None


def next_step(account: ConnectedAccount) -> str:
    """What the announcement tells the operator and the owner to do (no link: see the module's note)."""
    return (
        f"renew before then: `grantkeeper check --org {account.org} --user {account.user}` prints a link for "
        f"{account.user} to open; {account.user} may also reconnect it themselves (accounts.connect)"
    )


@dataclass(frozen=True)
class Renewal:
    """A new link (`issued`: its URL, shown once), or the live one issued before (`open`: no URL any more); neither
    when the account was removed meanwhile."""

    issued: MagicLinkIssued | None = None
    open: MagicLink | None = None


async def renewal_link(
    executor: Executor,
    vault: Vault,
    account: ConnectedAccount,
    *,
    reason: str = RENEWAL_REASON,
    issued_by: str = "operator",
) -> Renewal:
    """A reauth link for the account's owner that puts new credentials on this account before its grant ends (its
    refresh token's fixed end, or — `reason` "no_refresh_token" — its access token's) — unless one issued for that
    reason is still open (by whoever asked first: the operator's `grantkeeper check` or the owner's own agent
    listing their accounts), so repeated checks and listings do not pile up links."""
    for _ in range(2):  # the open link may be used or expire between the two looks: then issue once more
        issued = await executor.issue_link_unless_open(account, "reauth", reason, issued_by=issued_by)
        if issued is not None:
            return Renewal(issued=issued)
        live = await in_vault_thread(vault.links.open_link, account.id, reason, now=utcnow())
        if live is not None:
            return Renewal(open=live)
    return Renewal()  # the account was removed meanwhile
