"""`HealthMonitor`: finds a revoked or deactivated grant before an agent trips on it.

Each account gets the provider's cheapest authenticated call (Slack `auth.test`, GitHub `GET /user` — the spec's
`health_probe`) through `Executor.probe`, i.e. the same refresh and classification path as a tool call, so a
revoked grant becomes `reauth_required` and an inactive one `admin_action_required`, each with its events.

Work is shared by the fleet: a worker claims accounts whose `health_due_at` has passed by moving it one interval
forward (server/vault/schedule.py), then probes them with bounded concurrency and per-provider pacing.
At start, `validate_at_startup` makes every account not checked recently due and reports the result.
A working account whose refresh token has a fixed lifetime is announced ahead of its end (`warn_if_expiring`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import anyio

from server.execute import Executor
from server.lifecycle import refreshless, renewal
from server.lifecycle.pacing import ProviderPacer
from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.events import EventRecorder
from server.monitoring.logging import get_logger
from server.results import reason_of
from server.settings import Settings
from server.vault import AccountStatus, ConnectedAccount, Vault
from server.vault.models import utcnow

SEVERITY = {"ok": Severity.INFO, "reauth_required": Severity.CRITICAL, "admin_action_required": Severity.ERROR}


@dataclass(frozen=True)
class HealthReport:
    account: str  # display name, e.g. acme/alice/slack
    outcome: str  # ok | reauth_required | admin_action_required | rate_limited | upstream_error
    reason: str | None = None

    @property
    def healthy(self) -> bool:
        return self.outcome == "ok"


@dataclass(frozen=True)
class Unhealthy:
    """An account that needs a person: re-authorization by its owner, or an administrator."""

    account: str
    status: str
    reason: str | None


class HealthMonitor:
    def __init__(
        self, settings: Settings, vault: Vault, executor: Executor, events: EventRecorder, *, pacer: ProviderPacer | None = None
    ):
        self.settings = settings
        self.vault = vault
        self.executor = executor
        self.events = events
        self.pacer = pacer or ProviderPacer(settings.health_check_provider_rate)
        self.log = get_logger("grantkeeper.health")

    # ---- one account ---------------------------------------------------------------------------------
    async def check(self, account: ConnectedAccount, *, trigger: str) -> HealthReport:
        await self.pacer.wait(account.connector)
        result = await self.executor.probe(account)
        report = HealthReport(account.display_name, result.status, reason_of(result))
        if report.healthy:
            await self.warn_if_expiring(account)
        await anyio.to_thread.run_sync(self.vault.schedule.record_health_check, account.id, utcnow())
        await self.events.record(
            EventKind.HEALTH_CHECKED,
            account,
            severity=SEVERITY.get(report.outcome, Severity.WARNING),
            trigger=trigger,
            outcome=report.outcome,
            reason=report.reason,
        )
        if report.healthy:
            await self._warn_if_reconnect_due(account)
        return report

    async def warn_if_expiring(self, account: ConnectedAccount) -> bool:
        """Once per refresh token: when its fixed end is near (`renewal.ending_soon`), record
        `refresh_token_expiring` — a webhook `account.reauth_required` — so the owner renews before anything
        breaks. It names how to get a renewal link, never a link: a link is a secret (server/lifecycle/renewal.py)."""
        timings = await anyio.to_thread.run_sync(self.vault.credentials.timings, account.id)
        expires_at = renewal.ending_soon(self.settings, timings, utcnow())
        if expires_at is None:
            return False
        previous = await anyio.to_thread.run_sync(
            lambda: self.vault.events.recent(account_id=account.id, kind="refresh_token_expiring", limit=1)
        )
        if previous and previous[0].detail.get("refresh_expires_at") == expires_at.isoformat():
            return False  # already announced for this refresh token
        await self.events.record(
            EventKind.REFRESH_TOKEN_EXPIRING,
            account,
            severity=Severity.WARNING,
            reason=renewal.RENEWAL_REASON,
            refresh_expires_at=expires_at.isoformat(),
            next_step=renewal.next_step(account),
        )
        return True

    async def _warn_if_reconnect_due(self, account: ConnectedAccount) -> None:
        """A grant without a refresh token nearing its expiry: a warning (one alert per incident) so the operator
        can make sure its user reconnects; the user is offered the link by accounts.list."""
        fresh = await anyio.to_thread.run_sync(self.vault.accounts.get, account.id)
        timings = await anyio.to_thread.run_sync(self.vault.credentials.timings, account.id)
        at = refreshless.needs_user_at(fresh, timings)
        if refreshless.reconnect_due(self.settings, at, utcnow()):
            assert at is not None
            await self.events.record(
                EventKind.RECONNECT_DUE,
                fresh,
                severity=Severity.WARNING,
                reason=fresh.status_reason,
                needs_user_at=at.isoformat(),
            )

    async def check_all(self, accounts: list[ConnectedAccount], *, trigger: str) -> list[HealthReport]:
        reports: list[HealthReport] = []
        limiter = anyio.CapacityLimiter(self.settings.health_check_concurrency)

        async def one(account: ConnectedAccount) -> None:
            async with limiter:
                try:
                    reports.append(await self.check(account, trigger=trigger))
                except Exception:
                    self.log.error("health_check_crashed", account=account.display_name, exc_info=True)
                    reports.append(HealthReport(account.display_name, "upstream_error", "internal_error"))

        async with anyio.create_task_group() as group:
            for account in accounts:
                group.start_soon(one, account)
        return reports

    # ---- due checks, shared by the fleet ----------------------------------------------------------------
    async def run_due(self, *, trigger: str = "scheduled") -> list[HealthReport]:
        """Claim and check due accounts, batch after batch, until none is due."""
        reports: list[HealthReport] = []
        interval = timedelta(seconds=self.settings.health_check_interval_seconds)
        batch = self.settings.scheduler_batch_size
        while True:
            now = utcnow()
            accounts = await anyio.to_thread.run_sync(self.vault.schedule.claim_due_health_checks, now, batch, now + interval)
            if not accounts:
                return reports
            reports += await self.check_all(accounts, trigger=trigger)

    async def run(self) -> None:
        """Startup validation, then a pass over due accounts every poll interval, until cancelled."""
        try:
            await self.validate_at_startup()
        except Exception:
            self.log.error("startup_validation_failed", exc_info=True)
        poll = min(self.settings.scheduler_poll_seconds, self.settings.health_check_interval_seconds)
        while True:
            await anyio.sleep(poll)
            try:
                await self.run_due()
            except Exception:
                self.log.error("health_pass_failed", exc_info=True)

    # ---- at start ------------------------------------------------------------------------------------
    async def validate_at_startup(self) -> list[HealthReport]:
        """Check every active account not checked in the last `startup_validation_max_age_seconds` (workers
        starting together share the work), then say which accounts need a person, as an event and a log line."""
        now = utcnow()
        stale_before = now - timedelta(seconds=self.settings.startup_validation_max_age_seconds)
        await anyio.to_thread.run_sync(self.vault.schedule.make_stale_checks_due, now, stale_before)
        reports = await self.run_due(trigger="startup")
        unhealthy = await self.unhealthy_accounts()
        await self.events.record(
            EventKind.STARTUP_VALIDATED,
            None,
            severity=Severity.WARNING if unhealthy else Severity.INFO,
            checked=len(reports),
            ok=sum(r.healthy for r in reports),
            needs_reauthorization=[u.account for u in unhealthy if u.status == AccountStatus.REAUTH_REQUIRED.value],
            needs_admin=[u.account for u in unhealthy if u.status == AccountStatus.ADMIN_ACTION_REQUIRED.value],
        )
        return reports

    async def unhealthy_accounts(self) -> list[Unhealthy]:
        accounts = await anyio.to_thread.run_sync(self.vault.schedule.accounts_needing_people)
        return [Unhealthy(a.display_name, a.status, a.status_reason) for a in accounts]

    async def require_healthy(self) -> list[Unhealthy]:
        """`serve --require-healthy`: check every active account now; the accounts that need a person (empty:
        all healthy). Transient provider trouble does not count: only what a person must fix."""
        accounts = await anyio.to_thread.run_sync(self.vault.accounts.all)
        await self.check_all([a for a in accounts if a.status == AccountStatus.ACTIVE.value], trigger="startup")
        return await self.unhealthy_accounts()
