"""A key acts for its own identity only: Alice's key, tried on every tool over both HTTP transports, never
touches Bob's accounts — not his grants at the providers, not his rows in the vault."""

from __future__ import annotations

import pytest

from server.auth import create_api_key
from simulators.seeding import seed_account
from tests.support.web import call_structured, http_session, sse_session, vault_rows

pytestmark = pytest.mark.anyio

# One valid call per tool. A new tool fails the first assertion below until it is added here.
TOOL_ARGUMENTS = {
    "slack_read_channel": {"channel": "C0GENERAL", "limit": 1},
    "slack_post_message": {"channel": "C0GENERAL", "text": "hello"},
    "github_search_issues": {"query": "bug"},
    "github_create_issue": {"repo": "acme/app", "title": "hello"},
    "gmail_search_messages": {"query": "quarterly", "max_results": 1},
    "gmail_send_message": {"to": ["carol@example.org"], "subject": "hello", "body": "hello"},
    "calendar_create_event": {"summary": "hello", "start": "2026-05-04T10:00:00Z", "end": "2026-05-04T11:00:00Z"},
    "calendar_list_events": {"time_min": "2026-05-04T00:00:00Z", "time_max": "2026-05-05T00:00:00Z"},
    "zendesk_create_ticket": {"subject": "hello", "body": "hello"},
    "zendesk_list_tickets": {"page_size": 1},
    "accounts_list": {},
    "accounts_connect": {"connector": "slack"},
    "slack_request": {"method": "GET", "path": "/auth.test"},
    "github_request": {"method": "GET", "path": "/user"},
    "google_request": {"method": "GET", "path": "/gmail/v1/users/me/profile"},
    "zendesk_request": {"method": "GET", "path": "/api/v2/users/me.json"},
}
SESSIONS = {"streamable-http": http_session, "sse": sse_session}
BOB_SLACK = {"team_id": "T0SIMTEAM", "team_name": "Simulated Workspace", "user_id": "U0BOB"}
BOB_GITHUB = {"login": "bob", "id": 2}
BOB_GOOGLE = {"email": "bob@example.com", "name": "Bob"}
BOB_ZENDESK = {"user_id": 2, "name": "Bob", "email": "bob@acme.example"}
PROVIDER_TOOLS = ("slack_", "github_", "gmail_", "calendar_", "zendesk_", "google_")
ALICE_SLACK = {"team_id": "T0SIMTEAM", "team_name": "Simulated Workspace", "user_id": "U0ALICE"}
ALICE_GITHUB = {"login": "alice", "id": 3}


def seed_bob(runtime, settings, slack_sim, github_sim, google_sim=None, zendesk_sim=None) -> tuple[str, str]:
    """Bob's connected Slack and GitHub (and, when given, Google and Zendesk) accounts; returns his Slack and
    GitHub access tokens."""
    slack, github = slack_sim.issue_grant(BOB_SLACK), github_sim.issue_grant(BOB_GITHUB)
    seed_account(settings, runtime.vault, "slack", slack, user="bob", provider_account_id="T0SIMTEAM:U0BOB")
    seed_account(settings, runtime.vault, "github", github, user="bob", provider_account_id="2")
    if google_sim is not None:
        seed_account(
            settings,
            runtime.vault,
            "google",
            google_sim.issue_grant(BOB_GOOGLE),
            user="bob",
            provider_account_id="bob@example.com",
        )
    if zendesk_sim is not None:
        seed_account(
            settings, runtime.vault, "zendesk", zendesk_sim.issue_grant(BOB_ZENDESK), user="bob", provider_account_id="2"
        )
    return slack.access_token, github.access_token


@pytest.mark.parametrize("transport", SESSIONS)
async def test_alices_key_never_reaches_bobs_accounts_on_any_tool(
    runtime, settings, slack_sim, github_sim, google_sim, zendesk_sim, web, transport
):
    seed_bob(runtime, settings, slack_sim, github_sim, google_sim, zendesk_sim)
    alice = create_api_key(runtime.vault, org="acme", user="alice").key
    bobs_rows = [row for row in vault_rows(runtime)["connected_account"] if row["user"] == "bob"]
    bobs_credentials = {row["account_id"]: row for row in vault_rows(runtime)["credential"]}  # Alice has none

    async with SESSIONS[transport](web, alice) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == set(TOOL_ARGUMENTS)
        results = {name: await call_structured(session, name, arguments) for name, arguments in TOOL_ARGUMENTS.items()}

    for name in (n for n in TOOL_ARGUMENTS if n.startswith(PROVIDER_TOOLS)):
        assert results[name]["status"] == "reauth_required", name
        assert results[name]["account"].startswith("acme/alice/"), name  # a link for Alice's own account
    assert results["accounts_list"]["user"] == "alice"
    assert {a["status"] for a in results["accounts_list"]["accounts"]} <= {"pending"}  # only her own, unconnected
    assert results["accounts_connect"]["account"] == "acme/alice/slack"
    # Bob's grants were never presented to a provider, and his rows are exactly as they were.
    assert slack_sim.counters.api_requests == github_sim.counters.api_requests == 0
    assert google_sim.counters.api_requests == zendesk_sim.counters.api_requests == 0
    assert [row for row in vault_rows(runtime)["connected_account"] if row["user"] == "bob"] == bobs_rows
    after = {row["account_id"]: row for row in vault_rows(runtime)["credential"]}
    assert {account_id: after[account_id] for account_id in bobs_credentials} == bobs_credentials


async def test_with_both_connected_each_key_uses_only_its_own_grants(runtime, settings, slack_sim, github_sim, web):
    bob_slack, bob_github = seed_bob(runtime, settings, slack_sim, github_sim)
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(ALICE_SLACK), provider_account_id="T0SIMTEAM:U0ALICE")
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(ALICE_GITHUB), provider_account_id="3")
    # Bob's grants are dead at the providers: any call that used them would come back reauth_required.
    slack_sim.revoke(token=bob_slack)
    github_sim.revoke(token=bob_github)
    alice = create_api_key(runtime.vault, org="acme", user="alice").key
    bob = create_api_key(runtime.vault, org="acme", user="bob").key

    async with http_session(web, alice) as session:
        alices = {
            name: await call_structured(session, name, arguments)
            for name, arguments in TOOL_ARGUMENTS.items()
            if name.startswith(("slack_", "github_"))
        }
        listing = await call_structured(session, "accounts_list")
    async with http_session(web, bob) as session:
        bobs = await call_structured(session, "slack_read_channel", TOOL_ARGUMENTS["slack_read_channel"])

    assert {name: result["status"] for name, result in alices.items()} == dict.fromkeys(alices, "ok")
    assert alices["github_create_issue"]["issue"]["author"] == "alice"
    assert {a["provider_account_id"] for a in listing["accounts"]} == {"T0SIMTEAM:U0ALICE", "3"}
    assert (bobs["status"], bobs["account"]) == ("reauth_required", "acme/bob/slack")


async def test_naming_another_users_label_reaches_nothing(runtime, settings, slack_sim, github_sim, web):
    """Bob's accounts carry the label `work`; Alice naming that label on every tool gets invalid_input (she has no
    such account), never Bob's grant."""
    seed_account(
        settings,
        runtime.vault,
        "slack",
        slack_sim.issue_grant(BOB_SLACK),
        user="bob",
        provider_account_id="T0SIMTEAM:U0BOB",
        label="work",
    )
    seed_account(
        settings, runtime.vault, "github", github_sim.issue_grant(BOB_GITHUB), user="bob", provider_account_id="2", label="work"
    )
    before = vault_rows(runtime)
    alice = create_api_key(runtime.vault, org="acme", user="alice").key
    async with http_session(web, alice) as session:
        results = {
            name: await call_structured(session, name, {**arguments, "account": "work"})
            for name, arguments in TOOL_ARGUMENTS.items()
            if name.startswith(("slack_", "github_"))
        }
    assert {name: (r["status"], r["reason"]) for name, r in results.items()} == dict.fromkeys(
        results, ("invalid_input", "unknown_account_label")
    )
    assert slack_sim.counters.api_requests == github_sim.counters.api_requests == 0
    after = vault_rows(runtime)
    assert after["connected_account"] == before["connected_account"] and after["credential"] == before["credential"]
