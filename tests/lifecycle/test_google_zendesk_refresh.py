"""Refresh on the two newer shapes: Google keeps its refresh token (no rotation), Zendesk rotates and wants the
token request as JSON. Counted at the simulators, never timed."""

from __future__ import annotations

import os

import anyio
import pytest

from simulators.fleet import run_workers
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
SEARCH = {"query": "quarterly", "max_results": 5}
LIST = {"page_size": 5}


async def test_expired_google_token_is_refreshed_without_rotation_and_the_refresh_token_is_kept(runtime, settings, google_sim):
    tokens = google_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "google", tokens, expired=True)

    async with mcp_client(runtime) as client:
        first = await call(client, "gmail_search_messages", SEARCH)
        google_sim.expire_access_tokens()  # Google answers 401; the same refresh token is presented again
        second = await call(client, "gmail_search_messages", SEARCH)

    assert first["status"] == second["status"] == "ok"
    assert google_sim.counters.token_requests == 2 and google_sim.counters.refreshes_ok == 2
    stored = runtime.vault.credentials.read(account.id)
    assert stored.version == 3
    assert stored.refresh_token == tokens.refresh_token  # the answer had none, so ours was kept
    assert stored.access_token != tokens.access_token
    assert stored.refresh_expires_at is None


async def test_revoked_google_grant_needs_reauth_after_at_most_one_token_request(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    google_sim.revoke()  # 401 on the API, 400 invalid_grant "Token has been expired or revoked." on refresh

    async with mcp_client(runtime) as client:
        results = [
            await call(client, "calendar_list_events", {"time_min": "2026-05-01T00:00:00Z", "time_max": "2026-05-08T00:00:00Z"})
            for _ in range(3)
        ]

    assert [r["status"] for r in results] == ["reauth_required"] * 3
    assert results[0]["reason"] == "refresh_token_revoked"
    assert results[0]["magic_link"].startswith(f"{settings.public_url}/connect/")
    assert google_sim.counters.token_requests == 1
    assert google_sim.counters.api_requests == 1


async def test_google_testing_app_refresh_token_expiry_is_a_reauth(runtime, settings, google_sim):
    google_sim.set_publishing_status("testing")
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant(), expired=True)
    google_sim.advance_clock(7 * 24 * 3600 + 1)

    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", SEARCH)

    assert result["status"] == "reauth_required"
    assert google_sim.counters.token_requests == 1 and google_sim.counters.api_requests == 0


async def test_zendesk_refresh_is_sent_as_json_and_the_rotated_token_is_stored(runtime, settings, zendesk_sim):
    tokens = zendesk_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "zendesk", tokens, expired=True)

    async with mcp_client(runtime) as client:
        first = await call(client, "zendesk_list_tickets", LIST)
        zendesk_sim.expire_access_tokens()  # 401 invalid_token: refresh with the rotated token, not the first
        second = await call(client, "zendesk_list_tickets", LIST)

    assert first["status"] == second["status"] == "ok"
    # The simulator refuses form bodies, and it authenticated the client from the JSON body's credentials.
    assert zendesk_sim.token_request_formats == ["json", "json"]
    assert zendesk_sim.counters.refreshes_ok == 2 and zendesk_sim.counters.reuse_detections == 0
    stored = runtime.vault.credentials.read(account.id)
    assert stored.version == 3 and stored.refresh_token != tokens.refresh_token
    assert stored.refresh_expires_at is not None  # refresh_token_expires_in (30 days) was kept


async def test_fifty_concurrent_zendesk_calls_on_an_expired_token_make_one_token_request(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant(), expired=True)
    results = []

    async with mcp_client(runtime) as client:

        async def one_call() -> None:
            results.append(await call(client, "zendesk_list_tickets", {"page_size": 1}))

        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(one_call)

    assert [r["status"] for r in results] == ["ok"] * 50
    assert zendesk_sim.counters.token_requests == 1
    assert zendesk_sim.counters.reuse_detections == 0
    assert zendesk_sim.counters.api_requests == 50


def test_three_processes_refresh_an_expired_zendesk_token_once(runtime_sync, settings, zendesk_sim):
    """Zendesk deletes the previous pair on rotation, so a second refresh in another process would kill the grant."""
    seed_account(settings, runtime_sync.vault, "zendesk", zendesk_sim.issue_grant(), expired=True)
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}

    outputs = run_workers(env, processes=3, calls=10, tool="zendesk_list_tickets", arguments='{"page_size": 1}')

    assert [s for output in outputs for s in output["statuses"]] == ["ok"] * 30
    assert zendesk_sim.counters.token_requests == 1
    assert zendesk_sim.counters.reuse_detections == 0
    assert zendesk_sim.token_request_formats == ["json"]
