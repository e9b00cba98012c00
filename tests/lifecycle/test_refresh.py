"""Transparent refresh: proactive on expiry, reactive on the provider's 'expired', one refresh per grant."""

from __future__ import annotations

import anyio
import pytest

from server.vault.models import utcnow
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio


async def test_expired_access_token_is_refreshed_once_and_the_rotated_token_is_stored(runtime, settings, slack_sim):
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens, expired=True)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", {"channel": "C0GENERAL"})

    assert result["status"] == "ok"
    assert slack_sim.counters.token_requests == 1
    stored = runtime.vault.credentials.read(account.id)
    assert stored.version == 2
    assert stored.refresh_token not in (None, tokens.refresh_token)
    assert stored.access_token != tokens.access_token
    assert stored.access_expires_at > utcnow()

    # The rotated refresh token is the live one: the next refresh uses it without tripping reuse detection.
    slack_sim.expire_access_tokens()
    async with mcp_client(runtime) as client:
        again = await call(client, "slack_read_channel", {"channel": "C0GENERAL"})
    assert again["status"] == "ok"
    assert slack_sim.counters.token_requests == 2
    assert slack_sim.counters.refreshes_ok == 2
    assert slack_sim.counters.reuse_detections == 0
    assert runtime.vault.credentials.read(account.id).version == 3


async def test_slack_token_expired_mid_call_refreshes_and_retries_once(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.expire_access_tokens()  # our copy still looks fresh; Slack answers HTTP 200 token_expired

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": 2})

    assert result["status"] == "ok"
    assert len(result["messages"]) == 2
    assert slack_sim.counters.token_requests == 1
    assert slack_sim.counters.api_requests == 2  # the rejected call and its one retry
    kinds = [event.kind for event in runtime.vault.events.recent()]
    assert "api_auth_failure" in kinds and "refresh_succeeded" in kinds


async def test_fifty_concurrent_calls_on_an_expired_token_make_one_token_request(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    results = []

    async with mcp_client(runtime) as client:

        async def one_call() -> None:
            results.append(await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": 1}))

        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(one_call)

    assert [r["status"] for r in results] == ["ok"] * 50
    assert slack_sim.counters.token_requests == 1
    assert slack_sim.counters.reuse_detections == 0


async def test_github_rotation_that_kills_the_old_pair_is_followed(runtime, settings, github_sim):
    tokens = github_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "github", tokens, expired=True)

    async with mcp_client(runtime) as client:
        first = await call(client, "github_search_issues", {"query": "bug", "repo": "octo/demo"})
        github_sim.expire_access_tokens()  # GitHub answers 401 Bad credentials
        second = await call(client, "github_search_issues", {"query": "bug", "repo": "octo/demo"})

    assert first["status"] == second["status"] == "ok"
    assert github_sim.counters.token_requests == 2
    assert github_sim.counters.reuse_detections == 0
    assert runtime.vault.credentials.read(account.id).version == 3


async def test_token_past_three_quarters_of_its_life_is_refreshed_in_the_background(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), lifetime_used=0.8)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", {"channel": "C0GENERAL"})
        assert result["status"] == "ok"
        # The call did not wait for the refresh; wait for the background task itself, not for time.
        await runtime.tokens.wait_for_background()

    assert slack_sim.counters.token_requests == 1
    assert runtime.vault.credentials.read(account.id).version == 2
    assert any(e.kind == "refresh_succeeded" and e.detail["trigger"] == "proactive" for e in runtime.vault.events.recent())


async def test_token_early_in_its_life_is_used_as_is(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), lifetime_used=0.5)
    async with mcp_client(runtime) as client:
        assert (await call(client, "slack_read_channel", {"channel": "C0GENERAL"}))["status"] == "ok"
    await runtime.tokens.wait_for_background()
    assert slack_sim.counters.token_requests == 0
