"""`grantkeeper sessions list|revoke` (a real subprocess on the test's vault): browser sessions and MCP client
sessions, who and since when, never a secret; revoking one ends it at once."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session

from server.identity.models import McpGrant
from server.identity.sessions import SESSION_COOKIE
from tests.server.test_cli import grantkeeper
from tests.support.web import outcome_of

pytestmark = pytest.mark.anyio


async def test_sessions_are_listed_and_revoked(runtime, env, web, browser_factory):
    alice, carol = browser_factory(), browser_factory()
    await alice.sign_in(web, "alice")
    await carol.sign_in(web, "carol")
    with Session(runtime.vault.engine) as session:  # an MCP client session, as the authorization server makes one
        session.add(
            McpGrant(
                id="g" * 32,
                client_id="https://agent.example/client.json",
                client_name="Agent",
                org="acme",
                user="alice",
                scopes="tools",
            )
        )
        session.commit()

    listed = grantkeeper(env, "sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((row["kind"], row["org"], row["user"]) for row in rows) == [
        ("browser", "acme", "alice"),
        ("browser", "globex", "carol"),
        ("mcp", "acme", "alice"),
    ]
    assert next(row for row in rows if row["kind"] == "mcp")["client"] == "Agent"
    for browser in (alice, carol):
        assert browser.client.cookies.get(SESSION_COOKIE) not in listed.stdout

    revoked = grantkeeper(env, "sessions", "revoke", "--org", "acme", "--user", "alice")
    assert revoked.returncode == 0 and "revoked 2 session(s)" in revoked.stdout
    assert (await alice.client.get(f"{web}/login")).status_code == 303  # signed out
    assert outcome_of(await carol.client.get(f"{web}/login")) == "signed_in"
    carol_id = next(row["id"] for row in rows if row["user"] == "carol")
    assert grantkeeper(env, "sessions", "revoke", carol_id).returncode == 0
    assert (await carol.client.get(f"{web}/login")).status_code == 303
    nothing = grantkeeper(env, "sessions", "revoke", carol_id)
    assert nothing.returncode != 0 and "no live session" in nothing.stderr
    assert len(json.loads(grantkeeper(env, "sessions", "list", "--json", "--all").stdout)) == 3
