"""`RefreshScheduler`: keeps every grant fresh before anyone needs it, in every worker of a fleet.

Each worker loops: claim a batch of due credentials (`refresh_due_at <= now`, oldest first, through the index;
`FOR UPDATE SKIP LOCKED` plus the lease on PostgreSQL, the lease compare-and-set on SQLite — see
server/vault/schedule.py), refresh each through `TokenManager.refresh_claimed` (the one refresh path there is),
at most `scheduler_concurrency` at once and at most `scheduler_provider_rate` token requests per second per
provider, then sleep until the next due time (at most `scheduler_poll_seconds`) or until a slot frees up. A
credential written meanwhile in this worker (a refresh, a re-authorization) with an earlier due time wakes it
sooner (`note_due`), so a 20-second token is refreshed at 15 s, not at the next poll.

Due times sit at 75 % of a token's lifetime (± 5 % jitter), the advisory window: a refresh that fails there
keeps the current token and is retried later (`TokenManager._retry_at`). Only inside the last
`mandatory_refresh_seconds` does a tool call wait for a refresh itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from server.failures import AdminActionRequiredError, GrantGoneError, UpstreamCallError
from server.lifecycle.pacing import ProviderPacer
from server.lifecycle.tokens import TokenManager
from server.monitoring.logging import get_logger
from server.settings import Settings
from server.vault import Vault
from server.vault.models import utcnow
from server.vault.schedule import ClaimedRefresh

# When rows are due but none could be claimed (held by other workers), look again after this long.
CONTENDED_RETRY_SECONDS = 1.0


@dataclass
class SchedulerStats:
    claimed: int = 0
    refreshed: int = 0
    failed: int = 0
    lease_lost: int = 0
    peak_in_flight: int = 0


class RefreshScheduler:
    def __init__(
        self,
        settings: Settings,
        vault: Vault,
        tokens: TokenManager,
        *,
        pacer: ProviderPacer | None = None,
        clock: Callable[[], datetime] = utcnow,
        wait: Callable[[float | None, anyio.Event], Awaitable[None]] | None = None,
    ):
        self.settings = settings
        self.vault = vault
        self.tokens = tokens
        self.pacer = pacer or ProviderPacer(settings.scheduler_provider_rate)
        self.stats = SchedulerStats()
        self.log = get_logger("grantkeeper.scheduler")
        self.clock = clock
        self._wait = wait or _wait_for_event_or
        self._in_flight = 0
        self._slot_freed = anyio.Event()
        self._due_hint: datetime | None = None
        tokens.due_listeners.append(self.note_due)

    def note_due(self, due_at: datetime) -> None:
        """A credential was (about to be) written with this due time: wake up for it if that is sooner."""
        if self._due_hint is None or due_at < self._due_hint:
            self._due_hint = due_at
            self._slot_freed.set()

    # ---- loops ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled. Refreshes already talking to a provider finish before cancellation completes."""
        self.log.info(
            "scheduler_started",
            owner=self.tokens.owner,
            concurrency=self.settings.scheduler_concurrency,
            batch_size=self.settings.scheduler_batch_size,
            provider_rate=self.settings.scheduler_provider_rate,
        )
        async with anyio.create_task_group() as group:
            while True:
                self._slot_freed = anyio.Event()
                try:
                    more_due = await self._fill(group)
                    if more_due and self._in_flight < self.settings.scheduler_concurrency:
                        continue  # a full batch came back and slots are free: claim the next one now
                    wait = None if more_due else await self._idle_seconds()
                except Exception:
                    self.log.error("scheduler_pass_failed", exc_info=True)
                    wait = self.settings.scheduler_poll_seconds
                await self._wait_for_slot_or(wait)

    async def run_until_idle(self) -> SchedulerStats:
        """Refresh everything due now that no other worker holds, then return (tests, benchmarks)."""
        async with anyio.create_task_group() as group:
            while True:
                self._slot_freed = anyio.Event()
                more_due = await self._fill(group)
                if more_due and self._in_flight < self.settings.scheduler_concurrency:
                    continue
                if not more_due and self._in_flight == 0:
                    break
                await self._wait_for_slot_or(None)
        return self.stats

    # ---- one pass ------------------------------------------------------------------------------------
    async def _fill(self, group: anyio.abc.TaskGroup) -> bool:
        """Claim up to the free slots and start a refresh for each. True when it got all it asked for (more may
        be due) or when no slot was free."""
        free = self.settings.scheduler_concurrency - self._in_flight
        if free <= 0:
            return True
        wanted = min(free, self.settings.scheduler_batch_size)
        claims: list[ClaimedRefresh] = await anyio.to_thread.run_sync(
            self.vault.schedule.claim_due_refreshes,
            self.tokens.owner,
            self.clock(),
            wanted,
            timedelta(seconds=self.settings.lease_seconds),
        )
        for claim in claims:
            self._in_flight += 1
            self.stats.claimed += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self._in_flight)
            group.start_soon(self._refresh_one, claim)
        return len(claims) == wanted

    async def _refresh_one(self, claim: ClaimedRefresh) -> None:
        account = claim.account
        try:
            try:
                await self.pacer.wait(account.connector)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):  # shutting down before the provider call: hand the row back
                    await anyio.to_thread.run_sync(
                        self.vault.credentials.drop_lease, account.id, claim.version, self.tokens.owner
                    )
                raise
            # A rotation in flight is finished and stored even if the worker is shutting down: cancelling it
            # half-way would spend the refresh token without keeping its successor.
            with anyio.CancelScope(shield=True):
                snapshot = await self.tokens.refresh_claimed(account, claim.version, trigger="scheduled")
            if snapshot is None:
                self.stats.lease_lost += 1
            else:
                self.stats.refreshed += 1
        except (GrantGoneError, AdminActionRequiredError, UpstreamCallError) as failure:
            # Already recorded as lifecycle events by the TokenManager; the current token stays in use if it can.
            self.stats.failed += 1
            self.log.info("scheduled_refresh_failed", account=account.display_name, reason=failure.reason)
        except Exception:
            self.stats.failed += 1
            self.log.error("scheduled_refresh_crashed", account=account.display_name, exc_info=True)
        finally:
            self._in_flight -= 1
            self._slot_freed.set()

    async def _idle_seconds(self) -> float:
        """How long to sleep when nothing more is due: until the next due time, at most the poll interval."""
        now = self.clock()
        next_due = await anyio.to_thread.run_sync(self.vault.schedule.next_refresh_due, now)
        poll = self.settings.scheduler_poll_seconds
        # The hint covers a due time committed after the query above (or not committed yet); once reached, the
        # row itself is due and the query finds it.
        hint, self._due_hint = self._due_hint, None
        if hint is not None and hint > now:
            self._due_hint = hint
            next_due = hint if next_due is None else min(next_due, hint)
        if next_due is None:
            return poll
        until = (next_due - now).total_seconds()
        return min(poll, until if until > 0 else CONTENDED_RETRY_SECONDS)

    async def _wait_for_slot_or(self, seconds: float | None) -> None:
        """Sleep for `seconds` (None: until then) or until a refresh started this pass finishes (or an earlier
        due time is noted), if sooner."""
        await self._wait(seconds, self._slot_freed)


async def _wait_for_event_or(seconds: float | None, event: anyio.Event) -> None:
    with anyio.move_on_after(seconds):
        await event.wait()
