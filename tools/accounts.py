"""The caller's own connected accounts: their health (never a token), links to connect new ones, and — for an
account that will soon need its owner — the link that renews it ahead of time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from server import failures
from server.lifecycle import refreshless, renewal
from server.results import Ok, failure_result, result_model, to_call_result
from server.vault import NO_REFRESH_TOKEN, AccountStatus, ConnectedAccount
from server.vault.models import utcnow
from tools.toolset import AccountLabel, Tool, Toolset, with_choices


class AccountHealth(BaseModel):
    connector: str
    label: str
    status: str = Field(description="active | reauth_required | admin_action_required | pending | disabled")
    reason: str | None = None
    provider_account_id: str | None = None
    scopes: list[str]
    access_expires_at: datetime | None = None
    refresh_due_at: datetime | None = None
    last_refresh_at: datetime | None = None
    last_refresh_outcome: str | None = None
    needs_user_at: datetime | None = Field(
        default=None, description="connected without a refresh token: when the account stops working without its user"
    )
    reconnect_link: str | None = Field(
        default=None, description="single-use link to reconnect before `needs_user_at`, offered as it approaches"
    )
    renew_by: datetime | None = Field(
        default=None,
        description="the refresh token has a fixed end and it is near: the account stops working then unless its "
        "owner renews it (opens `renewal_link`, or reconnects with accounts.connect)",
    )
    renewal_link: str | None = Field(
        default=None,
        description="single-use link for the account's owner that renews this same account before `renew_by`; "
        "given once: while it is open, later listings give only `link_expires_at`",
    )
    link_expires_at: datetime | None = Field(
        default=None, description="when the link offered (`reconnect_link`, or `renewal_link` given now or earlier) expires"
    )

    def describe(self) -> str:
        if self.needs_user_at is not None:
            text = f"{self.connector}/{self.label}: {self.status}, {refreshless.describe(self.needs_user_at)}"
            if self.reconnect_link:
                text += f"; reconnect ahead of time: {self.reconnect_link}"
            return text
        if self.renew_by is not None:
            text = f"{self.connector}/{self.label}: {self.status}, but its refresh token ends {self.renew_by:%Y-%m-%d %H:%M} UTC"
            if self.renewal_link and self.link_expires_at:
                text += (
                    f"; renew ahead of time (the owner opens it; works once, expires "
                    f"{self.link_expires_at:%Y-%m-%d %H:%M} UTC): {self.renewal_link}"
                )
            elif self.link_expires_at:
                text += (
                    f"; the renewal link given earlier is open until {self.link_expires_at:%Y-%m-%d %H:%M} UTC "
                    f"(accounts.connect gives another)"
                )
            return text
        return f"{self.connector}/{self.label}: {self.status}" + (f" ({self.reason})" if self.reason else "")


class ConnectLinkOk(Ok):
    connector: str
    account: str = Field(description="org/user/connector the link connects")
    magic_link: str = Field(description="single-use URL the account owner opens to connect the account")
    link_expires_at: datetime
    next_step: str

    def summary(self) -> str:
        return (
            f"Open this link to connect {self.account}: {self.magic_link} "
            f"(works once, expires {self.link_expires_at:%Y-%m-%d %H:%M} UTC). {self.next_step}"
        )


class AccountsOk(Ok):
    org: str
    user: str
    accounts: list[AccountHealth]

    def summary(self) -> str:
        if not self.accounts:
            return f"No accounts connected for {self.org}/{self.user}."
        return "\n".join(a.describe() for a in self.accounts)


AccountsResult = result_model(AccountsOk)
ConnectLinkResult = result_model(ConnectLinkOk)


async def list_accounts(ctx: Context) -> Annotated[CallToolResult, AccountsResult]:
    """List the caller's connected accounts (Slack, GitHub, …), their labels, and whether each one currently works.

    Pass a label as the `account` argument of a service's tools to use that account instead of the default."""
    toolset = Toolset.of(ctx)
    caller = toolset.caller()
    vault = toolset.runtime.vault

    def read() -> list[tuple[AccountHealth, dict[str, Any] | None]]:
        rows = []
        for account in vault.accounts.all(caller.org, caller.user):
            credential = vault.credentials.timings(account.id)
            rows.append(
                (
                    AccountHealth(
                        connector=account.connector,
                        label=account.label,
                        status=account.status,
                        reason=account.status_reason,
                        provider_account_id=account.provider_account_id,
                        scopes=[s for s in account.scopes.replace(",", " ").split() if s],
                        needs_user_at=refreshless.needs_user_at(account, credential),
                        **(credential or {}),
                    ),
                    credential,
                )
            )
        return rows

    listed = await anyio.to_thread.run_sync(read)
    executor, settings, now = toolset.runtime.executor, toolset.runtime.settings, utcnow()

    async def still_there(health: AccountHealth) -> ConnectedAccount | None:
        return await anyio.to_thread.run_sync(vault.accounts.find, caller.org, caller.user, health.connector, health.label)

    for health, timings in listed:
        connector = toolset.runtime.connectors.get(health.connector)
        configured = connector is not None and connector.configured
        if health.status == AccountStatus.ACTIVE:
            health.renew_by = renewal.ending_soon(settings, timings, now)
        # The caller is verified and the account is their own, so a link shown here goes to its owner — as the
        # magic link of a `reauth_required` result does.
        if configured and refreshless.reconnect_due(settings, health.needs_user_at, now):
            if (account := await still_there(health)) is None:  # removed since it was listed
                continue
            # One open link at a time here too: a listing while it is open shows when it expires.
            reconnecting = await renewal.renewal_link(executor, vault, account, reason=NO_REFRESH_TOKEN, issued_by="agent")
            if reconnecting.issued is not None:
                health.reconnect_link, health.link_expires_at = reconnecting.issued.url, reconnecting.issued.expires_at
            elif reconnecting.open is not None:
                health.link_expires_at = reconnecting.open.expires_at
        elif configured and health.renew_by is not None:
            if (account := await still_there(health)) is None:
                continue
            # One open renewal link per account, whoever asked first: listing again shows when it expires, not a
            # new one (its URL was given once; only its hash is stored).
            renewing = await renewal.renewal_link(executor, vault, account, issued_by="agent")
            if renewing.issued is not None:
                health.renewal_link, health.link_expires_at = renewing.issued.url, renewing.issued.expires_at
                # As `grantkeeper check` does for its renewal links: who issued it, by the link's id (never its URL).
                await toolset.runtime.audit.record(
                    f"{caller.org}/{caller.user}",
                    "link_created",
                    account_id=account.id,
                    target=account.display_name,
                    link_id=renewing.issued.link_id,
                    purpose="reauth",
                    reason=renewal.RENEWAL_REASON,
                    tool="accounts.list",
                    via=toolset.via(),
                )
            elif renewing.open is not None:
                health.link_expires_at = renewing.open.expires_at
    return to_call_result(AccountsOk(org=caller.org, user=caller.user, accounts=[health for health, _ in listed]))


async def connect(
    ctx: Context,
    connector: Annotated[str, Field(description="which service to connect")],
    account: AccountLabel = None,
) -> Annotated[CallToolResult, ConnectLinkResult]:
    """Get a single-use link with which the user connects (or reconnects) their own account for a service.

    Show the link to the user; once they approve access at the service, that service's tools work. To connect
    a second account of the same service, give it a label as `account` (e.g. 'oss')."""
    toolset = Toolset.of(ctx)
    caller = toolset.caller()
    if missing := toolset.runtime.connectors[connector].missing_client:
        return to_call_result(
            failure_result(
                failures.AdminActionRequiredError("client_not_configured", missing),
                connector=connector,
                account=f"{caller.org}/{caller.user}/{connector}",
            )
        )
    linked, link = await toolset.runtime.executor.connect_link(caller, connector, account or "default")
    display = toolset.runtime.connectors[connector].spec.display_name
    return to_call_result(
        ConnectLinkOk(
            connector=connector,
            account=linked.display_name,
            magic_link=link.url,
            link_expires_at=link.expires_at,
            next_step=f"Ask {caller.user} to open it and approve access at {display}, then use the {display} tools.",
        )
    )


def tools(connectors: list[str]) -> list[Tool]:
    """The accounts tools; `accounts.connect` offers exactly the configured `connectors` (an enum in its schema)."""
    return [
        Tool(
            "accounts.list", list_accounts, title="List my connected accounts", read_only=True, idempotent=True, per_account=False
        ),
        Tool(
            "accounts.connect",
            with_choices(connect, "connector", connectors),
            title="Connect one of my accounts",
            read_only=False,
            idempotent=False,
        ),
    ]
