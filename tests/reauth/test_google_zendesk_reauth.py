"""The magic-link loop on Google and Zendesk: Google's authorize URL asks for offline access with a fresh
consent (or the reconnected grant would have no refresh token), Zendesk's code exchange goes out as JSON, and
both confirm who signed in through their health probe."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of

pytestmark = pytest.mark.anyio
SEARCH = {"query": "quarterly", "max_results": 1}
LIST = {"page_size": 1}


async def test_google_reconnect_asks_for_offline_consent_and_the_new_grant_can_refresh(runtime, settings, google_sim, web, user):
    account = seed_account(settings, runtime.vault, "google", google_sim.issue_grant(), provider_account_id="alice@example.com")
    google_sim.revoke()
    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", SEARCH)
    assert result["status"] == "reauth_required"

    started = await user.start(result["magic_link"])
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert (query["access_type"], query["prompt"], query["code_challenge_method"]) == (["offline"], ["consent"], ["S256"])
    assert "https://www.googleapis.com/auth/gmail.send" in query["scope"][0].split()
    page = await user.client.get(await user.consent(started.headers["location"]))

    assert outcome_of(page) == "reconnected" and "alice@example.com" in page.text
    assert runtime.vault.credentials.read(account.id).refresh_token is not None
    google_sim.expire_access_tokens()
    async with mcp_client(runtime) as client:
        assert (await call(client, "gmail_search_messages", SEARCH))["status"] == "ok"
    assert google_sim.counters.refreshes_ok == 1  # the reconnected grant refreshed with its new refresh token


async def test_google_reconnect_as_another_mailbox_is_refused(runtime, settings, google_sim, web, user):
    account = seed_account(settings, runtime.vault, "google", google_sim.issue_grant(), provider_account_id="alice@example.com")
    google_sim.revoke()
    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", SEARCH)

    page = await user.reconnect(result["magic_link"], email="mallory@example.com")

    assert outcome_of(page) == "identity_mismatch"
    assert runtime.vault.accounts.get(account.id).status == "reauth_required"


async def test_zendesk_reconnect_exchanges_the_code_as_json_and_confirms_the_user(runtime, settings, zendesk_sim, web, user):
    account = seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant(), provider_account_id="1900000000001")
    zendesk_sim.revoke()
    async with mcp_client(runtime) as client:
        result = await call(client, "zendesk_list_tickets", LIST)
    assert result["status"] == "reauth_required"

    page = await user.reconnect(result["magic_link"])

    assert outcome_of(page) == "reconnected" and "alice@acme.example" in page.text
    assert zendesk_sim.token_request_formats == ["json", "json"]  # the failed refresh, then the code exchange
    assert runtime.vault.accounts.get(account.id).status == "active"
    async with mcp_client(runtime) as client:
        assert (await call(client, "zendesk_list_tickets", LIST))["status"] == "ok"
