"""What an operator (or an account's owner) can do to one account, from the dashboard, /accounts or the CLI:
create a reconnect link, check it now, refresh it now, disable, enable, remove. Each is audited with who did it."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from server.execute import MagicLinkIssued
from server.failures import ToolCallError
from server.lifecycle.health import HealthMonitor
from server.lifecycle.offboarding import Removed
from server.lifecycle.tokens import RefreshTrigger
from server.monitoring.event_kinds import EventKind, Severity
from server.runtime import Runtime
from server.vault import AccountStatus, ConnectedAccount

DISABLED_REASON = "disabled_by_operator"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


class AccountActions:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    async def _audit(self, actor: str, action: str, account: ConnectedAccount, **detail: str | None) -> None:
        await self.runtime.audit.record(
            actor, action, account_id=account.id, target=account.display_name, connector=account.connector, **detail
        )

    async def reconnect_link(self, account: ConnectedAccount, *, actor: str, issued_by: str = "operator") -> MagicLinkIssued:
        purpose = "connect" if account.status == AccountStatus.PENDING else "reauth"
        # The dashboard's link is an operator's; /accounts passes "agent", since an API key there may be an agent's
        # (server/identity/link_guard.py refuses agent-made first-time connect links over HTTP without sign-in).
        link = await self.runtime.executor.issue_link(account, purpose, "requested", issued_by=issued_by)
        await self._audit(actor, "link_created", account, link_id=link.link_id, purpose=purpose)
        return link

    async def check_now(self, account: ConnectedAccount, *, actor: str) -> Outcome:
        monitor = HealthMonitor(self.runtime.settings, self.runtime.vault, self.runtime.executor, self.runtime.events)
        report = await monitor.check(account, trigger=RefreshTrigger.CONSOLE)
        await self._audit(actor, "check_now", account, outcome=report.outcome, reason=report.reason)
        return Outcome(
            report.healthy, f"{account.display_name}: {report.outcome}" + (f" ({report.reason})" if report.reason else "")
        )

    async def refresh_now(self, account: ConnectedAccount, *, actor: str) -> Outcome:
        tokens = self.runtime.tokens
        current = await anyio.to_thread.run_sync(self.runtime.vault.credentials.read, account.id)
        if current is None or account.status != AccountStatus.ACTIVE:
            outcome = Outcome(False, f"{account.display_name} has no working grant to refresh ({account.status})")
        else:
            try:
                await tokens.refresh(account, current.version, trigger=RefreshTrigger.CONSOLE)
                outcome = Outcome(True, f"{account.display_name}: refreshed")
            except ToolCallError as failure:
                outcome = Outcome(False, f"{account.display_name}: refresh failed ({failure.reason})")
        await self._audit(actor, "refresh_now", account, outcome="ok" if outcome.ok else "failed")
        return outcome

    async def disable(self, account: ConnectedAccount, *, actor: str) -> Outcome:
        changed = await anyio.to_thread.run_sync(
            self.runtime.vault.accounts.set_status, account.id, AccountStatus.DISABLED, DISABLED_REASON
        )
        self.runtime.executor.forget_account(account)
        if changed:
            await self.runtime.events.record(
                EventKind.STATUS_CHANGED,
                account,
                severity=Severity.WARNING,
                status=AccountStatus.DISABLED.value,
                reason=DISABLED_REASON,
                by=actor,
            )
        await self._audit(actor, "account_disabled", account)
        if changed:
            return Outcome(True, f"{account.display_name} disabled")
        return Outcome(
            account.status == AccountStatus.DISABLED,
            f"{account.display_name} unchanged ({account.status}{', removed' if account.removed_at else ''})",
        )

    async def enable(self, account: ConnectedAccount, *, actor: str) -> Outcome:
        """Back to work if it still holds a grant (the next check or call tells whether it is good), else pending."""
        if account.status != AccountStatus.DISABLED:
            return Outcome(False, f"{account.display_name} is not disabled ({account.status})")
        has_grant = await anyio.to_thread.run_sync(self.runtime.vault.credentials.read, account.id) is not None
        status = AccountStatus.ACTIVE if has_grant else AccountStatus.PENDING
        await anyio.to_thread.run_sync(self.runtime.vault.accounts.set_status, account.id, status, None)
        self.runtime.executor.forget_account(account)
        await self.runtime.events.record(EventKind.STATUS_CHANGED, account, status=status.value, reason=None, by=actor)
        await self._audit(actor, "account_enabled", account)
        return Outcome(True, f"{account.display_name} enabled ({status.value})")

    async def remove(self, account: ConnectedAccount, *, actor: str) -> Removed:
        removed = await self.runtime.offboarding.remove(account, actor=actor)
        await self._audit(actor, "account_removed", account, revocation=removed.revocation)
        return removed
