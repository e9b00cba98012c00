"""The proactive refresh scheduler: claims due grants (never another worker's), refreshes each once, keeps the
current token when a refresh fails early, and walks the due index instead of the table."""

from __future__ import annotations

import os
from datetime import timedelta

import anyio
import pytest
from sqlalchemy import text, update
from sqlmodel import Session

from server.background import refresh_scheduler
from server.lifecycle.pacing import ProviderPacer
from server.vault.models import Credential, utcnow
from server.vault.schedule import due_health_checks, due_refreshes
from simulators.fleet import run_workers
from simulators.seeding import seed_account, seed_many
from tests.support.holds import HoldRequests
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}


def scheduled_events(vault, kind: str) -> list:
    return [e for e in vault.events.recent(kind=kind, limit=100_000) if e.detail.get("trigger") == "scheduled"]


async def test_scheduler_refreshes_due_and_expired_grants_and_leaves_young_ones_alone(runtime, settings, slack_sim):
    due = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="due", lifetime_used=0.8)
    expired = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="late", expired=True)
    young = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="young", lifetime_used=0.5)

    stats = await refresh_scheduler(runtime).run_until_idle()

    assert (stats.claimed, stats.refreshed, stats.failed) == (2, 2, 0)
    assert slack_sim.counters.token_requests == 2
    assert slack_sim.counters.reuse_detections == 0
    versions = {a.user: runtime.vault.credentials.read(a.id).version for a in (due, expired, young)}
    assert versions == {"due": 2, "late": 2, "young": 1}
    refreshed = runtime.vault.credentials.read(due.id)
    assert refreshed.lease_owner is None and refreshed.refresh_due_at > utcnow()
    assert len(scheduled_events(runtime.vault, "refresh_succeeded")) == 2


async def test_a_second_pass_finds_nothing_due_after_the_first(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), lifetime_used=0.9)
    await refresh_scheduler(runtime).run_until_idle()
    again = await refresh_scheduler(runtime).run_until_idle()
    assert again.claimed == 0
    assert slack_sim.counters.token_requests == 1


async def test_failed_refresh_in_the_advisory_window_keeps_the_current_token_and_retries_later(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), lifetime_used=0.8)
    before = runtime.vault.credentials.read(account.id)
    slack_sim.token_endpoint_fail(count=1, status=503)

    stats = await refresh_scheduler(runtime).run_until_idle()

    assert (stats.claimed, stats.failed) == (1, 1)
    after = runtime.vault.credentials.read(account.id)
    assert after.version == before.version and after.access_token == before.access_token
    assert after.lease_owner is None and after.last_refresh_outcome == "ambiguous"  # a 5xx may follow a rotation
    assert utcnow() < after.refresh_due_at < after.access_expires_at  # retried later, before the token runs out
    assert runtime.vault.accounts.get(account.id).status == "active"
    async with mcp_client(runtime) as client:
        assert (await call(client, "slack_read_channel", READ))["status"] == "ok"  # the current token still works
    assert (await refresh_scheduler(runtime).run_until_idle()).claimed == 0  # not due again yet
    assert slack_sim.counters.token_requests == 1

    with Session(runtime.vault.engine) as session:  # the retry time arrives
        session.execute(update(Credential).where(Credential.account_id == account.id).values(refresh_due_at=utcnow()))
        session.commit()
    assert (await refresh_scheduler(runtime).run_until_idle()).refreshed == 1
    assert runtime.vault.credentials.read(account.id).version == before.version + 1


async def test_a_revoked_grant_is_marked_for_reauthorization_and_never_claimed_again(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), lifetime_used=0.8)
    slack_sim.revoke()

    first = await refresh_scheduler(runtime).run_until_idle()
    second = await refresh_scheduler(runtime).run_until_idle()

    assert (first.claimed, first.failed, second.claimed) == (1, 1, 0)
    assert slack_sim.counters.token_requests == 1
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_token_revoked")
    assert runtime.vault.credentials.read(account.id).refresh_due_at is None


async def test_calls_during_a_scheduled_refresh_wait_for_it_instead_of_refreshing_again(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    results: list[dict] = []

    async with mcp_client(runtime) as client:

        async def one_call() -> None:
            results.append(await call(client, "slack_read_channel", READ))

        async with anyio.create_task_group() as group:
            group.start_soon(refresh_scheduler(runtime).run_until_idle)
            for _ in range(20):
                group.start_soon(one_call)

    assert [r["status"] for r in results] == ["ok"] * 20
    assert slack_sim.counters.token_requests == 1
    assert slack_sim.counters.reuse_detections == 0


async def test_stopping_the_scheduler_finishes_the_refresh_in_flight_and_hands_back_the_rest(
    runtime, settings, slack_server, slack_sim
):
    ids = seed_many(
        settings, runtime.vault, "slack", [slack_sim.issue_grant() for _ in range(3)], lifetime=43200, lifetime_used=0.8
    )
    hold = HoldRequests(slack_sim, "/oauth.v2.access")
    slack_server.app = hold
    settings.scheduler_provider_rate = 0.5  # the second and third claims wait two and four seconds for their turn

    async with anyio.create_task_group() as group:
        group.start_soon(refresh_scheduler(runtime).run)
        await anyio.to_thread.run_sync(hold.arrived.wait, 10)  # the first refresh is at the provider
        group.cancel_scope.cancel()  # the worker stops
        hold.release.set()

    rows = [runtime.vault.credentials.read(account_id) for account_id in ids]
    assert [row.lease_owner for row in rows] == [None, None, None]  # nothing left leased
    assert sorted(row.version for row in rows) == [1, 1, 2]  # the rotation in flight was stored, not dropped
    assert slack_sim.counters.token_requests == 1 and slack_sim.counters.refreshes_ok == 1
    assert all(row.last_refresh_outcome in (None, "ok") for row in rows)  # handing back is not a failure


class ConcurrentTokenRequests:
    """ASGI middleware in front of a simulator that counts token requests in flight at once."""

    def __init__(self, app, token_path: str):
        self.app, self.token_path = app, token_path
        self.now = self.peak = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.token_path:
            return await self.app(scope, receive, send)
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


async def test_scheduler_never_has_more_refreshes_in_flight_than_its_concurrency(runtime, settings, slack_server, slack_sim):
    seed_many(settings, runtime.vault, "slack", [slack_sim.issue_grant() for _ in range(12)], lifetime=43200, lifetime_used=0.8)
    counter = ConcurrentTokenRequests(slack_sim, "/api/oauth.v2.access")
    slack_server.app = counter
    slack_sim.token_endpoint_latency(0.05)  # so that refreshes overlap; the bound is checked by counting
    settings.scheduler_concurrency = 3

    stats = await refresh_scheduler(runtime).run_until_idle()

    assert stats.refreshed == 12 and slack_sim.counters.token_requests == 12
    assert stats.peak_in_flight == 3
    assert 1 <= counter.peak <= 3


async def test_pacer_spaces_token_requests_per_provider_and_leaves_other_providers_alone():
    slept: list[tuple[str, float]] = []
    clock = [100.0]

    async def fake_sleep(seconds: float) -> None:
        slept.append((current, round(seconds, 6)))

    pacer = ProviderPacer(rate=4, clock=lambda: clock[0], sleep=fake_sleep)
    for current in ["slack"] * 4 + ["github"]:
        await pacer.wait(current)

    assert slept == [("slack", 0.25), ("slack", 0.5), ("slack", 0.75)]  # github's first request is not held back
    clock[0] += 10  # long after: no backlog is carried over
    await ProviderPacer(rate=0).wait("slack")  # rate 0: unpaced
    current = "slack"
    await pacer.wait("slack")
    assert len(slept) == 3


def test_two_claims_never_return_the_same_row(runtime_sync, settings, slack_sim):
    ids = seed_many(
        settings, runtime_sync.vault, "slack", [(f"a{i}", f"r{i}") for i in range(10)], lifetime=3600, lifetime_used=0.9
    )
    schedule, lease = runtime_sync.vault.schedule, timedelta(seconds=30)

    first = schedule.claim_due_refreshes("worker-a", utcnow(), 6, lease)
    second = schedule.claim_due_refreshes("worker-b", utcnow(), 6, lease)
    third = schedule.claim_due_refreshes("worker-c", utcnow(), 6, lease)

    assert len(first) == 6 and len(second) == 4 and third == []
    assert {c.account.id for c in first} | {c.account.id for c in second} == set(ids)
    assert runtime_sync.vault.credentials.read(first[0].account.id).lease_owner == "worker-a"


def test_due_scans_walk_their_index_instead_of_the_table(runtime_sync, settings):
    # Enough accounts, mostly not due, and fresh planner statistics: the plan a real vault gets.
    seed_many(settings, runtime_sync.vault, "slack", [(f"a{i}", f"r{i}") for i in range(3000)], lifetime=3600, lifetime_used=0.1)
    seed_many(
        settings,
        runtime_sync.vault,
        "slack",
        [(f"a{i}", f"r{i}") for i in range(5)],
        lifetime=3600,
        lifetime_used=0.9,
        user_prefix="due",
    )
    engine = runtime_sync.vault.engine
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")

        def plan(query) -> str:
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN"
            return "\n".join(str(row[-1]) for row in connection.exec_driver_sql(f"{explain} {compiled}").all())

        refresh_plan, health_plan = plan(due_refreshes(utcnow(), 50)), plan(due_health_checks(utcnow(), 50))
    assert "ix_credential_refresh_due_at" in refresh_plan, refresh_plan
    assert "ix_connected_account_status_health_due" in health_plan, health_plan
    for word in ("SCAN credential", "SCAN connected_account", "Seq Scan"):
        assert word not in refresh_plan + health_plan


def test_two_scheduler_processes_over_a_thousand_due_accounts_refresh_each_exactly_once(runtime_sync, settings, slack_sim):
    ids = seed_many(
        settings, runtime_sync.vault, "slack", [slack_sim.issue_grant() for _ in range(1000)], lifetime=43200, lifetime_used=0.8
    )
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}
    env.update(GRANTKEEPER_SCHEDULER_PROVIDER_RATE="0", GRANTKEEPER_SCHEDULER_CONCURRENCY="16")

    outputs = run_workers(env, processes=2, mode="scheduler")

    assert sum(o["refreshed"] for o in outputs) == 1000
    assert all(o["refreshed"] > 0 for o in outputs)  # the two shared the work
    assert sum(o["failed"] + o["lease_lost"] for o in outputs) == 0
    assert slack_sim.counters.token_requests == 1000
    assert slack_sim.counters.refreshes_ok == 1000
    assert slack_sim.counters.reuse_detections == 0
    with runtime_sync.vault.engine.connect() as connection:
        versions = connection.execute(text("SELECT version, count(*) FROM credential GROUP BY version")).all()
    assert [tuple(v) for v in versions] == [(2, 1000)]
    assert len(scheduled_events(runtime_sync.vault, "refresh_succeeded")) == 1000
    assert len(ids) == 1000
