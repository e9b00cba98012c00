"""Failure classes and what the agent sees: reauth with a magic link, admin action, rate limits, outages."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from server.vault.crypto import hash_token
from server.vault.models import ConnectedAccount, MagicLink
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

# Every retry here is decided as in production; only the waits are skipped (server/retry_policy.py).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("retry_waits_skipped")]
READ = {"channel": "C0GENERAL", "limit": 1}


def magic_link_rows(runtime) -> list[MagicLink]:
    with Session(runtime.vault.engine) as session:
        return list(session.exec(select(MagicLink)))


async def test_revoked_slack_grant_asks_for_reauth_with_a_magic_link_and_no_retry_storm(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.revoke()

    async with mcp_client(runtime) as client:
        first = await call(client, "slack_read_channel", READ)
        second = await call(client, "slack_read_channel", READ)

    assert first["status"] == "reauth_required"
    assert first["reason"] == "token_revoked"
    assert first["account"] == "acme/alice/slack"
    assert first["magic_link"].startswith(f"{settings.public_url}/connect/")
    assert second["status"] == "reauth_required"
    assert slack_sim.counters.token_requests == 0  # token_revoked is final: no refresh attempted
    assert slack_sim.counters.api_requests == 1  # the second call never reached Slack
    assert runtime.vault.accounts.get(account.id).status == "reauth_required"
    token = first["magic_link"].rsplit("/", 1)[1]
    links = magic_link_rows(runtime)
    assert len(links) == 2 and all(link.account_id == account.id for link in links)
    assert hash_token(token) in {link.token_hash for link in links}
    assert all(token not in (link.token_hash, link.id) for link in links)  # only the hash is stored


async def test_revoked_github_grant_costs_at_most_one_token_request(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    github_sim.revoke()  # 401 Bad credentials on the API, bad_refresh_token at the token endpoint

    async with mcp_client(runtime) as client:
        results = [await call(client, "github_search_issues", {"query": "bug"}) for _ in range(3)]

    assert [r["status"] for r in results] == ["reauth_required"] * 3
    assert results[0]["reason"] == "refresh_token_revoked"
    assert github_sim.counters.token_requests == 1


async def test_deactivated_slack_account_needs_an_administrator(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.deactivate()

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)

    assert result["status"] == "admin_action_required"
    assert result["reason"] == "account_inactive"
    assert slack_sim.counters.token_requests == 0
    assert runtime.vault.accounts.get(account.id).status == "admin_action_required"


async def test_short_retry_after_is_honoured_and_the_call_succeeds(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.rate_limit(count=1, retry_after=1)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)

    assert result["status"] == "ok"
    assert slack_sim.counters.rate_limited == 1
    assert slack_sim.counters.api_requests == 2


async def test_long_retry_after_is_returned_to_the_agent(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.rate_limit(count=1, retry_after=120)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)

    assert result == {**result, "status": "rate_limited", "retry_after_seconds": 120.0}
    assert slack_sim.counters.api_requests == 1


async def test_github_rate_limit_longer_than_we_wait_is_returned_to_the_agent(runtime, settings, github_sim):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    github_sim.rate_limit(count=5, retry_after=600)  # 403 + x-ratelimit-remaining: 0

    async with mcp_client(runtime) as client:
        result = await call(client, "github_search_issues", {"query": "bug"})

    assert result["status"] == "rate_limited"
    assert 590 <= result["retry_after_seconds"] <= 601
    assert github_sim.counters.api_requests == 1


async def test_transient_outage_on_a_read_is_retried_with_backoff(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.fail(count=2, status=503)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)

    assert result["status"] == "ok"
    assert slack_sim.counters.api_requests == 3


async def test_outage_longer_than_the_retry_budget_is_a_retryable_upstream_error(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.fail(count=10, status=503)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)

    assert result["status"] == "upstream_error"
    assert result["retryable"] is True and result["outcome_unknown"] is False
    assert slack_sim.counters.api_requests == settings.retry_attempts


async def test_a_failed_slack_post_is_repeated_only_once_history_proves_it_absent(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.fail(count=1, status=503, endpoint="chat.postMessage")  # refused before anything was stored

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_post_message", {"channel": "C0GENERAL", "text": "deploy done"})

    assert result["status"] == "ok" and result["posted"] is True
    assert slack_sim.counters.endpoint("chat.postMessage") == 2
    assert slack_sim.counters.endpoint("conversations.history") == 1  # looked for the marker first
    assert [m["text"] for m in slack_sim.messages("C0GENERAL")].count("deploy done") == 1


async def test_a_slack_post_whose_answer_was_lost_is_found_not_repeated(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.fail(count=1, status=502, after_processing=True, endpoint="chat.postMessage")

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_post_message", {"channel": "C0GENERAL", "text": "deploy done"})

    assert result["status"] == "ok"
    assert slack_sim.counters.endpoint("chat.postMessage") == 1
    stored = [m for m in slack_sim.messages("C0GENERAL") if m["text"] == "deploy done"]
    assert len(stored) == 1 and result["ts"] == stored[0]["ts"]
    assert stored[0]["metadata"]["event_payload"]["idempotency_key"] == result["idempotency_key"]


async def test_a_lost_thread_reply_is_found_in_the_thread(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    parent = slack_sim.seed_message("C0GENERAL", "the build is red")
    slack_sim.fail(count=1, status=503, after_processing=True, endpoint="chat.postMessage")
    reply = {"channel": "C0GENERAL", "text": "on it", "thread_ts": parent["ts"], "idempotency_key": "reply-build-red"}

    async with mcp_client(runtime) as client:
        first = await call(client, "slack_post_message", reply)
        again = await call(client, "slack_post_message", reply)  # an agent restarted after the first call

    assert first["status"] == "ok" and again["status"] == "ok"
    assert again["posted"] is False and again["ts"] == first["ts"]
    assert slack_sim.counters.endpoint("chat.postMessage") == 1
    assert slack_sim.counters.endpoint("conversations.replies") == 3  # before, after the lost answer, on repeat
    assert [m["text"] for m in slack_sim.messages("C0GENERAL")].count("on it") == 1


async def test_a_slack_post_stays_unknown_when_history_cannot_be_read(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.fail(count=1 + settings.retry_attempts, status=503)  # the post, then every try to read history

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_post_message", {"channel": "C0GENERAL", "text": "deploy done"})

    assert result["status"] == "upstream_error" and result["outcome_unknown"] is True
    assert slack_sim.counters.endpoint("chat.postMessage") == 1
    assert "deploy done" not in [m["text"] for m in slack_sim.messages("C0GENERAL")]


async def test_a_rate_limited_post_is_retried_because_slack_did_not_process_it(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.rate_limit(count=1, retry_after=1)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_post_message", {"channel": "C0GENERAL", "text": "deploy done"})

    assert result["status"] == "ok"
    assert slack_sim.counters.api_requests == 2


async def test_unknown_channel_is_invalid_input(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", {"channel": "C0NOSUCHCHANNEL"})
    assert result["status"] == "invalid_input"
    assert result["reason"] == "channel_not_found"


async def test_bad_arguments_are_refused_before_any_provider_call(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await client.call_tool("slack_read_channel", {"channel": "#general", "limit": 1000})
    assert result.is_error
    assert "channel" in result.content[0].text and "limit" in result.content[0].text
    assert slack_sim.counters.api_requests == 0


async def test_caller_without_an_account_gets_a_connect_link(runtime, slack_sim):
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)
    assert result["status"] == "reauth_required"
    assert result["reason"] == "not_connected"
    with Session(runtime.vault.engine) as session:
        pending = session.exec(select(ConnectedAccount)).one()
    assert (pending.org, pending.user, pending.status) == ("acme", "alice", "pending")
    assert magic_link_rows(runtime)[0].purpose == "connect"


async def test_unreachable_provider_is_a_retryable_upstream_error(runtime, settings, slack_sim, monkeypatch):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    connector = runtime.connectors["slack"]
    dead = connector.spec.model_copy(update={"api_base_url": "http://127.0.0.1:9/api"})
    monkeypatch.setitem(
        runtime.connectors, "slack", type(connector)(connector.provider, dead, connector.client_id, connector.client_secret)
    )
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)
    assert result["status"] == "upstream_error"
    assert result["reason"] == "unreachable" and result["retryable"] is True


async def test_a_grant_reconnected_while_the_call_failed_gets_no_new_link(runtime, settings, slack_sim):
    """The owner completed a link while this call was finding the old grant dead: no second consent is asked for."""
    from server.execute import Caller

    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())  # active: just reconnected
    before = magic_link_rows(runtime)

    result = await runtime.executor.reauth_required_with_new_link(
        Caller("acme", "alice"), runtime.connectors["slack"], account, "refresh_token_revoked"
    )

    assert (result.status, result.reason, result.retryable) == ("upstream_error", "reconnected_meanwhile", True)
    assert magic_link_rows(runtime) == before
    assert runtime.vault.accounts.get(account.id).status == "active"
