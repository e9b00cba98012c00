"""The caller's own connected accounts: their health (never a token), and links to connect new ones."""

from datetime import datetime
from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from server.results import Ok, to_call_result
from tools import Toolset


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


class ConnectLinkOk(Ok):
    connector: str
    account: str = Field(description="org/user/connector the link connects")
    magic_link: str = Field(description="single-use URL the account owner opens to connect the account")
    link_expires_at: datetime
    next_step: str

    def summary(self) -> str:
        return (f"Open this link to connect {self.account}: {self.magic_link} "
                f"(works once, expires {self.link_expires_at:%Y-%m-%d %H:%M} UTC). {self.next_step}")


class AccountsOk(Ok):
    org: str
    user: str
    accounts: list[AccountHealth]

    def summary(self) -> str:
        if not self.accounts:
            return f"No accounts connected for {self.org}/{self.user}."
        return "\n".join(
            f"{a.connector}/{a.label}: {a.status}" + (f" ({a.reason})" if a.reason else "") for a in self.accounts
        )


def register(toolset: Toolset) -> None:
    @toolset.tool("accounts.list", title="List my connected accounts", ok=AccountsOk, read_only=True,
                  idempotent=True)
    async def list_accounts(ctx: Context = None):
        """List the caller's connected accounts (Slack, GitHub, …) and whether each one currently works."""
        caller = toolset.caller(ctx)
        vault = toolset.runtime.vault

        def read() -> list[AccountHealth]:
            rows = []
            for account in vault.list_accounts(caller.org, caller.user):
                credential = vault.credential_timings(account.id)
                rows.append(AccountHealth(
                    connector=account.connector, label=account.label, status=account.status,
                    reason=account.status_reason, provider_account_id=account.provider_account_id,
                    scopes=[s for s in account.scopes.replace(",", " ").split() if s],
                    **(credential or {}),
                ))
            return rows

        accounts = await anyio.to_thread.run_sync(read)
        return to_call_result(AccountsOk(org=caller.org, user=caller.user, accounts=accounts))

    connectors = tuple(sorted(toolset.runtime.connectors))

    @toolset.tool("accounts.connect", title="Connect one of my accounts", ok=ConnectLinkOk, read_only=False,
                  idempotent=False)
    async def connect(
        connector: Annotated[Literal[connectors], Field(description="which service to connect")],  # type: ignore[valid-type]
        ctx: Context = None,
    ):
        """Get a single-use link with which the user connects (or reconnects) their own account for a service.

        Show the link to the user; once they approve access at the service, that service's tools work."""
        caller = toolset.caller(ctx)
        account, link = await toolset.runtime.executor.connect_link(caller, connector)
        display = toolset.runtime.connectors[connector].spec.display_name
        return to_call_result(ConnectLinkOk(
            connector=connector, account=account.display_name, magic_link=link.url, link_expires_at=link.expires_at,
            next_step=f"Ask {caller.user} to open it and approve access at {display}, then use the {display} tools."))
