"""Failure classes on Google and Zendesk: usage limits without Retry-After, text/plain 429s, missing scopes,
suspended users, health probes, and a Zendesk connector with no host configured."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from server.runtime import Runtime
from server.settings import Settings
from server.vault.models import ConnectedAccount, MagicLink
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

# Every retry here is decided as in production; only the waits are skipped (server/retry_policy.py).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("retry_waits_skipped")]
SEARCH = {"query": "is:unread", "max_results": 1}
LIST = {"page_size": 1}


async def test_google_usage_limit_is_retried_with_backoff_and_then_succeeds(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    google_sim.rate_limit(count=2)  # 403 usageLimits userRateLimitExceeded, no Retry-After

    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", {"query": "from:nobody", "max_results": 1})

    assert result["status"] == "ok"
    assert google_sim.counters.rate_limited == 2
    assert google_sim.counters.api_requests == 3
    retries = [e for e in runtime.vault.events.recent() if e.kind == "refresh_attempted"]
    assert retries == []  # a rate limit is not an auth problem


async def test_google_usage_limit_outlasting_the_retries_is_rate_limited_without_a_wait_time(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    google_sim.rate_limit(count=10, status=429)

    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", SEARCH)

    assert result["status"] == "rate_limited" and result["retry_after_seconds"] is None
    assert google_sim.counters.api_requests == settings.retry_attempts


async def test_a_rate_limited_gmail_send_is_retried_because_google_did_not_send_it(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    google_sim.rate_limit(count=1)

    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_send_message", {"to": ["bob@example.com"], "subject": "Hi", "body": "x"})

    assert result["status"] == "ok"
    assert len(google_sim.sent_messages()) == 1


async def test_google_grant_without_the_scope_needs_an_administrator_or_a_reconnect(runtime, settings, google_sim):
    tokens = google_sim.issue_grant(scopes=["https://www.googleapis.com/auth/gmail.readonly"])
    seed_account(settings, runtime.vault, "google", tokens)

    async with mcp_client(runtime) as client:
        result = await call(
            client, "calendar_list_events", {"time_min": "2026-05-01T00:00:00Z", "time_max": "2026-05-02T00:00:00Z"}
        )

    assert result["status"] == "admin_action_required" and result["reason"] == "insufficientPermissions"
    assert google_sim.counters.token_requests == 0


async def test_zendesk_short_retry_after_is_honoured_and_a_long_one_returned(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())

    async with mcp_client(runtime) as client:
        zendesk_sim.rate_limit(count=1, retry_after=0)
        short = await call(client, "zendesk_list_tickets", LIST)
        zendesk_sim.rate_limit(count=1, retry_after=120)
        long = await call(client, "zendesk_list_tickets", LIST)

    assert short["status"] == "ok"
    assert long["status"] == "rate_limited" and long["retry_after_seconds"] == 120.0
    assert zendesk_sim.counters.api_requests == 3


async def test_suspended_zendesk_user_needs_an_administrator(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())
    zendesk_sim.deactivate()

    async with mcp_client(runtime) as client:
        result = await call(client, "zendesk_list_tickets", LIST)

    assert result["status"] == "admin_action_required" and result["reason"] == "Forbidden"
    assert zendesk_sim.counters.token_requests == 0


async def test_health_probes_name_the_google_mailbox_and_the_zendesk_user(runtime, settings, google_sim, zendesk_sim):
    google = seed_account(settings, runtime.vault, "google", google_sim.issue_grant(), expired=True)
    zendesk = seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())

    google_probe = await runtime.executor.probe(google)
    zendesk_probe = await runtime.executor.probe(zendesk)

    assert (google_probe.status, google_probe.provider_account_id) == ("ok", "alice@example.com")
    assert (zendesk_probe.status, zendesk_probe.provider_account_id) == ("ok", "1900000000001")
    assert google_sim.counters.endpoint("profile") == 1
    assert zendesk_sim.counters.endpoint("GET /users/me") == 1


async def test_zendesk_without_a_host_is_an_admin_problem_before_any_account_or_link(env, monkeypatch, zendesk_sim):
    monkeypatch.delenv("GRANTKEEPER_ZENDESK_API_BASE_URL")
    runtime = Runtime.open(Settings())
    try:
        async with mcp_client(runtime) as client:
            result = await call(client, "zendesk_create_ticket", {"subject": "x", "body": "y"})
    finally:
        await runtime.aclose()

    assert result["status"] == "admin_action_required" and result["reason"] == "connector_not_configured"
    assert "GRANTKEEPER_ZENDESK_API_BASE_URL" in result["next_step"]
    assert "https://yourcompany.zendesk.com" in result["next_step"]
    with Session(runtime.vault.engine) as session:
        assert session.exec(select(ConnectedAccount)).all() == []
        assert session.exec(select(MagicLink)).all() == []
    assert zendesk_sim.counters.api_requests == 0


async def test_zendesk_rejecting_our_client_secret_needs_an_administrator(env, monkeypatch, zendesk_sim):
    monkeypatch.setenv("GRANTKEEPER_ZENDESK_CLIENT_SECRET", "not-the-secret")
    settings = Settings()
    runtime = Runtime.open(settings)
    try:
        seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant(), expired=True)
        async with mcp_client(runtime) as client:
            result = await call(client, "zendesk_list_tickets", LIST)
    finally:
        await runtime.aclose()

    assert result["status"] == "admin_action_required" and result["reason"] == "client_credentials_rejected"
    assert zendesk_sim.counters.token_requests == 1 and zendesk_sim.counters.api_requests == 0
