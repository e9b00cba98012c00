"""A provider that never answers, or trickles its answer forever, costs a tool call at most its deadline and never
holds the connections another provider's calls need. Ends are proven through the settings and the structured
result, and by counting at the simulator that grantkeeper, not the provider, ended each hung request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from providers import slack
from server.execute import Caller
from server.runtime import Runtime
from server.settings import Settings
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}
FOREVER = 10_000  # more hostile answers than any test makes: every request to the provider hangs


@asynccontextmanager
async def runtime_with(env, **settings: object) -> AsyncIterator[Runtime]:
    runtime = Runtime.open(Settings(**settings))
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def abandoned(sim, count: int) -> bool:
    """Whether the simulator saw the client walk away from `count` hostile answers (it notices on its own thread)."""
    return await anyio.to_thread.run_sync(sim.counters.wait_for, "answers_abandoned", count)


async def test_a_provider_that_never_answers_costs_one_tool_call_deadline_not_attempts_times_timeout(env, slack_sim):
    # Each request may take 30 s, three attempts are allowed: only the 1 s tool-call deadline can end this call.
    async with runtime_with(env, tool_call_deadline_seconds=1, api_timeout_seconds=30, retry_attempts=3) as runtime:
        seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant())
        slack_sim.hang(count=FOREVER)
        async with mcp_client(runtime) as client:
            result = await call(client, "slack_read_channel", READ)

    assert result == {**result, "status": "upstream_error", "reason": "timeout", "retryable": True, "outcome_unknown": False}
    assert "deadline (1 s)" in result["next_step"]
    assert slack_sim.counters.api_requests == 1  # one attempt, hanging, ended by the deadline
    assert await abandoned(slack_sim, 1)


async def test_a_trickling_answer_is_cut_at_the_request_deadline_on_every_attempt(env, slack_sim):
    # A byte every 20 ms: a per-read timeout of 0.5 s would never fire. The total deadline ends every attempt.
    async with runtime_with(env, tool_call_deadline_seconds=120, api_timeout_seconds=0.5, retry_attempts=3) as runtime:
        seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant())
        slack_sim.trickle(count=FOREVER, interval=0.02)
        async with mcp_client(runtime) as client:
            result = await call(client, "slack_read_channel", READ)

    assert result == {**result, "status": "upstream_error", "reason": "timeout", "retryable": True, "outcome_unknown": False}
    assert "within 0.5 s" in result["next_step"]
    assert slack_sim.counters.api_requests == 3 == slack_sim.counters.hostile_answers
    assert await abandoned(slack_sim, 3)


async def test_a_write_that_hangs_after_it_was_sent_is_outcome_unknown_and_not_repeated(env, slack_sim):
    async with runtime_with(env, tool_call_deadline_seconds=60, api_timeout_seconds=0.5, retry_attempts=3) as runtime:
        seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant())
        slack_sim.hang(count=FOREVER)
        async with mcp_client(runtime) as client:
            result = await call(client, "slack_post_message", {"channel": "C0GENERAL", "text": "deploy done"})

    assert result == {**result, "status": "upstream_error", "reason": "timeout", "retryable": False, "outcome_unknown": True}
    assert slack_sim.counters.endpoint("chat.postMessage") == 1  # sent once; the look-ups for it hung as well
    assert await abandoned(slack_sim, slack_sim.counters.api_requests)


@pytest.mark.parametrize("hostile", ["hang", "trickle"])
async def test_a_hanging_provider_holds_only_its_own_pool(env, slack_sim, github_sim, hostile):
    async with runtime_with(env, api_max_connections=2, tool_call_deadline_seconds=60, api_timeout_seconds=60) as runtime:
        seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant())
        seed_account(runtime.settings, runtime.vault, "github", github_sim.issue_grant())
        getattr(slack_sim, hostile)(count=FOREVER)
        caller = Caller("acme", "alice")

        async def read(api):
            return await slack.conversations_history(api, channel="C0GENERAL", limit=1)

        async with anyio.create_task_group() as hung:
            for _ in range(5):  # more calls than Slack's pool has connections
                hung.start_soon(runtime.executor.run, caller, "slack", read)
            # Both of Slack's connections now wait for answers that never come; three more calls queue behind them.
            assert await anyio.to_thread.run_sync(slack_sim.counters.wait_for, "hostile_answers", 2)
            async with mcp_client(runtime) as client:
                results = [await call(client, "github_search_issues", {"query": "bug"}) for _ in range(3)]
            slack_pool, github_pool = runtime.pools["slack"].stats(), runtime.pools["github"].stats()
            hung.cancel_scope.cancel()

    assert [r["status"] for r in results] == ["ok"] * 3
    assert slack_pool.in_flight == slack_pool.max_connections == 2  # saturated the whole time GitHub was called
    assert slack_pool.waits >= 1  # Slack's own calls queued for its connections…
    assert github_pool.waits == 0  # …and not one GitHub call waited for a connection
    assert slack_sim.counters.hostile_answers == 2  # the queued Slack calls never got a connection either


async def test_a_retry_after_longer_than_the_time_left_is_returned_not_waited_out(env, slack_sim):
    # Retry-After 5 s is within rate_limit_max_wait_seconds (10), but not within the 2 s this call has.
    async with runtime_with(env, tool_call_deadline_seconds=2, rate_limit_max_wait_seconds=10) as runtime:
        seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant())
        slack_sim.rate_limit(count=1, retry_after=5)
        async with mcp_client(runtime) as client:
            result = await call(client, "slack_read_channel", READ)

    assert result == {**result, "status": "rate_limited", "retry_after_seconds": 5.0}
    assert slack_sim.counters.api_requests == 1


@pytest.mark.parametrize("refresh", ["expiry", "reactive"])
async def test_a_refresh_the_call_waits_for_ends_at_the_call_deadline_and_finishes_behind_it(env, slack_sim, refresh):
    # The token endpoint takes 3 s, well within the refresh's own 10 s deadline but not within this call's 1 s.
    async with runtime_with(env, tool_call_deadline_seconds=1, api_timeout_seconds=30, refresh_timeout_seconds=10) as runtime:
        account = seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=refresh == "expiry")
        if refresh == "reactive":
            slack_sim.expire_access_tokens()  # refused by the provider, though our copy says it is good
        slack_sim.token_endpoint_latency(3)
        async with mcp_client(runtime) as client:
            late = await call(client, "slack_read_channel", READ)
            # The refresh the call gave up waiting for goes on: the next call uses what it stored (or joins it).
            assert await anyio.to_thread.run_sync(slack_sim.counters.wait_for, "refreshes_ok", 1)
            after = await call(client, "slack_read_channel", READ)
        stored = runtime.vault.credentials.read(account.id)

    assert late == {**late, "status": "upstream_error", "reason": "timeout", "retryable": True, "outcome_unknown": False}
    assert "deadline (1 s)" in late["next_step"]
    assert after["status"] == "ok" and stored.version == 2  # rotated once, stored once: nothing lost
    assert slack_sim.counters.token_requests == 1 and slack_sim.counters.reuse_detections == 0
