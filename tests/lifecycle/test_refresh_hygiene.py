"""Refresh hygiene: a failing token endpoint is asked at most once per account per cooldown, however many callers
and workers; the scheduler wakes for the earliest due refresh; short-lived tokens are not refreshed on every call."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import anyio
import pytest
from sqlalchemy import update
from sqlmodel import Session

from server.lifecycle.grants import credential_write
from server.lifecycle.oauth import TokenGrant
from server.lifecycle.scheduler import RefreshScheduler
from server.vault.models import Credential, utcnow
from simulators.fleet import run_workers
from simulators.seeding import seed_account
from tests.support.cooldown import end_the_cooldown
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}


async def fifty_calls(runtime) -> list[dict]:
    results: list[dict] = []
    async with mcp_client(runtime) as client:

        async def one() -> None:
            results.append(await call(client, "slack_read_channel", READ))

        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(one)
    return results


async def test_fifty_calls_while_the_token_endpoint_fails_make_one_token_request_per_cooldown(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_fail(count=1000, status=503)

    first = await fifty_calls(runtime)
    assert slack_sim.counters.token_requests == 1
    assert {(r["status"], r["reason"], r["retryable"]) for r in first} == {("upstream_error", "token_endpoint_unavailable", True)}
    assert all(0 < r["retry_after_seconds"] <= 60 for r in first)

    # Inside the cooldown: the recorded failure, no token request.
    again = await fifty_calls(runtime)
    assert slack_sim.counters.token_requests == 1
    assert {r["status"] for r in again} == {"upstream_error"}

    # The next cooldown period: one more attempt, and a longer cooldown after it.
    end_the_cooldown(runtime.vault, account.id)
    await fifty_calls(runtime)
    assert slack_sim.counters.token_requests == 2
    row = runtime.vault.credentials.read(account.id)
    assert row.consecutive_failures == 2 and row.last_refresh_outcome in ("failed", "ambiguous")
    assert row.refresh_due_at - utcnow() > timedelta(seconds=5)  # longer than the first cooldown (5 s)

    # The provider is back: after the cooldown the calls work again, with one refresh.
    slack_sim.clear_faults()
    end_the_cooldown(runtime.vault, account.id)
    assert {r["status"] for r in await fifty_calls(runtime)} == {"ok"}
    assert slack_sim.counters.token_requests == 3


def test_the_cooldown_holds_across_worker_processes(runtime_sync, settings, slack_sim):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_fail(count=1000, status=503)
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}

    outputs = run_workers(env, processes=2, calls=25)

    statuses = [status for output in outputs for status in output["statuses"]]
    assert statuses == ["upstream_error"] * 50
    assert slack_sim.counters.token_requests == 1


class SimulatedTime:
    """The scheduler's clock and sleep: a sleep advances the clock at once, unless something wakes it first."""

    def __init__(self, start: datetime, on_sleep=None):
        self.now = start
        self.sleeps: list[tuple[float, float | None]] = []  # (seconds since start, asked to sleep)
        self.start = start
        self.on_sleep = on_sleep
        self.busy = lambda: False  # while a refresh is in flight, simulated time stands still

    def clock(self) -> datetime:
        return self.now

    async def wait(self, seconds: float | None, event: anyio.Event) -> None:
        self.sleeps.append(((self.now - self.start).total_seconds(), seconds))
        if self.on_sleep is not None:
            await self.on_sleep(self)
        if event.is_set():
            return
        if seconds is None or self.busy():
            await event.wait()  # a refresh in flight: wait for it, in real time
        else:
            self.now += timedelta(seconds=seconds)


async def test_a_twenty_second_token_written_while_the_scheduler_sleeps_is_refreshed_at_three_quarters_of_its_life(
    runtime, settings, slack_sim
):
    assert settings.scheduler_poll_seconds == 30  # the default, untouched
    tokens = slack_sim.issue_grant(access_ttl=20)
    written: dict[str, str] = {}
    refreshed_at: list[float] = []

    async def on_sleep(time: SimulatedTime) -> None:
        if not written:  # the scheduler has just gone to sleep with nothing due: now a 20 s token arrives
            account = runtime.vault.accounts.create(org="acme", user="alice", connector="slack")
            grant = TokenGrant(
                access_token=tokens.access_token,
                refresh_token=tokens.refresh_token,
                token_type="bearer",
                expires_in=20,
                refresh_expires_in=None,
                scope=None,
                provider_account_id=None,
                identity={},
            )
            write = credential_write(
                runtime.connectors["slack"],
                grant,
                time.now,
                refresh_at_fraction=settings.refresh_at_fraction,
                due_listeners=runtime.tokens.due_listeners,  # the scheduler wakes for the new due time
            )
            runtime.vault.credentials.put(account.id, write)
            written["id"] = account.id
        if scheduler.stats.refreshed and not refreshed_at:
            refreshed_at.append((time.now - time.start).total_seconds())
            group.cancel_scope.cancel()

    time = SimulatedTime(utcnow(), on_sleep)
    scheduler = RefreshScheduler(settings, runtime.vault, runtime.tokens, clock=time.clock, wait=time.wait)
    time.busy = lambda: scheduler._in_flight > 0
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(scheduler.run)

    assert slack_sim.counters.token_requests == 1
    first_sleep, second_sleep = time.sleeps[0][1], time.sleeps[1][1]
    assert first_sleep == 30  # nothing was due
    assert 14 <= second_sleep <= 16  # woken by the new token: until 75 % ± 5 % of its 20 s
    assert 14 <= refreshed_at[0] <= 16
    assert runtime.vault.credentials.read(written["id"]).version == 2


async def test_a_sixty_second_token_is_not_refreshed_on_every_call(runtime, settings, slack_sim):
    """A minute of calls, one simulated second apart, on tokens that live 60 s (the provider's clock and ours
    advance together): a refresh when three quarters of a token's life are gone, not one per call."""
    assert settings.mandatory_refresh_seconds == 60  # the default: as long as the token's whole life
    slack_sim.set_access_ttl(60)
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(access_ttl=60))
    start = utcnow()
    elapsed = [0]
    runtime.tokens.clock = lambda: start + timedelta(seconds=elapsed[0])
    statuses = []
    async with mcp_client(runtime) as client:
        for _ in range(120):
            elapsed[0] += 1
            slack_sim.advance_clock(1)
            statuses.append((await call(client, "slack_read_channel", READ))["status"])
            await runtime.tokens.wait_for_background()
    assert set(statuses) == {"ok"}
    # Two minutes of 60 s tokens: refreshed at about 45 s and 90 s (± jitter), never on every call.
    assert 2 <= slack_sim.counters.token_requests <= 3


def refresh_token_lifetime(vault, account_id: str, *, lifetime: timedelta, left: timedelta) -> None:
    """Give the stored refresh token a fixed lifetime of which `left` remains."""
    now = utcnow()
    with Session(vault.engine) as session:
        session.execute(
            update(Credential)
            .where(Credential.account_id == account_id)
            .values(issued_at=now + left - lifetime, refresh_expires_at=now + left)
        )
        session.commit()


@pytest.mark.parametrize(
    ("lifetime", "quiet_at", "announced_at"),
    [
        (timedelta(days=180), timedelta(days=8), timedelta(days=6)),  # GitHub-like: 7 days ahead
        (timedelta(hours=2), timedelta(minutes=70), timedelta(minutes=50)),  # short: at half its life
    ],
)
async def test_a_refresh_token_with_a_fixed_end_is_announced_ahead_of_time_once(
    runtime, settings, slack_sim, lifetime, quiet_at, announced_at
):
    from server.background import health_monitor

    runtime.vault.outbox.add_endpoint("https://hooks.example.com/grantkeeper", ["account.reauth_required"])
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    monitor = health_monitor(runtime)

    refresh_token_lifetime(runtime.vault, account.id, lifetime=lifetime, left=quiet_at)
    await monitor.check(account, trigger="scheduled")
    assert runtime.vault.events.recent(account_id=account.id, kind="refresh_token_expiring") == []

    refresh_token_lifetime(runtime.vault, account.id, lifetime=lifetime, left=announced_at)
    await monitor.check(account, trigger="scheduled")
    await monitor.check(account, trigger="scheduled")  # once per refresh token, not per check
    [event] = runtime.vault.events.recent(account_id=account.id, kind="refresh_token_expiring")
    assert event.detail["next_step"].startswith("renew before then: `grantkeeper check --org acme --user alice`")
    [message] = runtime.vault.outbox.messages()
    assert message.event_type == "account.reauth_required" and message.order_key == account.id
    data = message.payload["data"]
    assert (data["reason"], data["refresh_expires_at"]) == ("refresh_token_expiring", event.detail["refresh_expires_at"])
    assert runtime.vault.accounts.get(account.id).status == "active"  # it still works until then
