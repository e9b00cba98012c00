"""Callers signed in through OIDC (two people of org acme, one of org globex) and an API-key caller, side by side
on grantkeeper's authorization server: each, on every tool and both HTTP transports, reaches only their own
accounts — the others' grants are never presented to a provider and their rows do not change."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest

from server.auth import create_api_key
from simulators.seeding import seed_account
from tests.identity.conftest import query_of
from tests.support.web import call_structured, http_session, sse_session, vault_rows
from tests.web.test_caller_isolation import PROVIDER_TOOLS, TOOL_ARGUMENTS

pytestmark = pytest.mark.anyio
REDIRECT_URI = "http://127.0.0.1:9/callback"
PEOPLE = {"alice": ("acme", "alice"), "bob": ("acme", "bob"), "carol": ("globex", "carol"), "key": ("acme", "dave")}
SESSIONS = {"streamable-http": http_session, "sse": sse_session}


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GRANTKEEPER_MCP_AUTHORIZATION", "grantkeeper")
    return {**env, "GRANTKEEPER_MCP_AUTHORIZATION": "grantkeeper"}


async def access_token_for(web: str, person: str, browser) -> str:
    """The OAuth dance over plain HTTP: register, authorize, sign in, consent, exchange the code (PKCE)."""
    client = browser.client
    registered = (
        await client.post(
            f"{web}/register",
            json={
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "none",
                "client_name": f"{person}'s agent",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "scope": "tools",
            },
        )
    ).json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    await browser.sign_in(web, person)
    consent = (
        await client.get(
            f"{web}/authorize",
            params={
                "response_type": "code",
                "client_id": registered["client_id"],
                "redirect_uri": REDIRECT_URI,
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": f"{web}/mcp",
            },
        )
    ).headers["location"]
    page = await client.get(consent)
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    answered = await client.post(
        f"{web}/oauth/consent", params={"request": query_of(consent)["request"]}, data={"csrf_token": csrf, "decision": "allow"}
    )
    code = query_of(answered.headers["location"])["code"]
    tokens = (
        await client.post(
            f"{web}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "client_id": registered["client_id"],
                "resource": f"{web}/mcp",
            },
        )
    ).json()
    return tokens["access_token"]


def seed_everyone_but(caller: str, runtime, settings, slack_sim, github_sim, google_sim, zendesk_sim) -> None:
    for number, (name, (org, user)) in enumerate(PEOPLE.items(), start=10):
        if name == caller:
            continue
        seed_account(
            settings,
            runtime.vault,
            "slack",
            slack_sim.issue_grant({"team_id": "T0SIMTEAM", "user_id": f"U{number}"}),
            org=org,
            user=user,
            provider_account_id=f"T0SIMTEAM:U{number}",
        )
        seed_account(
            settings,
            runtime.vault,
            "github",
            github_sim.issue_grant({"login": user, "id": number}),
            org=org,
            user=user,
            provider_account_id=str(number),
        )
        seed_account(
            settings,
            runtime.vault,
            "google",
            google_sim.issue_grant({"email": f"{user}@{org}.test"}),
            org=org,
            user=user,
            provider_account_id=f"{user}@{org}.test",
        )
        seed_account(
            settings,
            runtime.vault,
            "zendesk",
            zendesk_sim.issue_grant({"user_id": number, "name": user}),
            org=org,
            user=user,
            provider_account_id=str(number),
        )


@pytest.mark.parametrize("transport", SESSIONS)
@pytest.mark.parametrize("caller", PEOPLE)
async def test_each_caller_reaches_only_their_own_accounts(
    runtime, settings, slack_sim, github_sim, google_sim, zendesk_sim, web, browser_factory, caller, transport
):
    org, user = PEOPLE[caller]
    if caller == "key":
        token = create_api_key(runtime.vault, org=org, user=user).key
    else:
        token = await access_token_for(web, caller, browser_factory())
    seed_everyone_but(caller, runtime, settings, slack_sim, github_sim, google_sim, zendesk_sim)
    others = vault_rows(runtime)

    async with SESSIONS[transport](web, token) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == set(TOOL_ARGUMENTS)
        results = {name: await call_structured(session, name, arguments) for name, arguments in TOOL_ARGUMENTS.items()}

    for name in (n for n in TOOL_ARGUMENTS if n.startswith(PROVIDER_TOOLS)):
        assert results[name]["status"] == "reauth_required", name
        assert results[name]["account"].startswith(f"{org}/{user}/"), name
    assert (results["accounts_list"]["org"], results["accounts_list"]["user"]) == (org, user)
    assert {a["status"] for a in results["accounts_list"]["accounts"]} <= {"pending"}
    assert results["accounts_connect"]["account"] == f"{org}/{user}/slack"
    for simulator in (slack_sim, github_sim, google_sim, zendesk_sim):
        assert simulator.counters.api_requests == 0
    after = vault_rows(runtime)
    for table in ("credential",):
        assert after[table] == others[table]
    assert [row for row in after["connected_account"] if (row["org"], row["user"]) != (org, user)] == [
        row for row in others["connected_account"] if (row["org"], row["user"]) != (org, user)
    ]
