"""The caller's own connected accounts and their health — never a token."""

from datetime import datetime

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
