"""RFC 8707 at /token: a token request that names a resource must name the one its code (or refresh token) was
authorized for, else `invalid_target` and nothing is issued, and the code or refresh token stays usable. Driven
over loopback HTTP: dynamic registration, sign-in at the OIDC simulator, consent, then /token."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from sqlmodel import Session, select

from server.identity.models import McpAuthorization, McpGrant, McpToken
from tests.identity.conftest import Browser, query_of
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override

pytestmark = pytest.mark.anyio
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B: its S256 challenge is below
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GRANTKEEPER_MCP_AUTHORIZATION", "grantkeeper")
    return {**env, "GRANTKEEPER_MCP_AUTHORIZATION": "grantkeeper"}


def rows(runtime, model: Any) -> list[Any]:
    with Session(runtime.vault.engine) as session:
        return list(session.exec(select(model)))


async def consented_code(web: str, bob: Browser) -> tuple[str, str]:
    """Register a public client, sign bob in and let him allow it: (client_id, code)."""
    registered = await bob.client.post(
        f"{web}/register",
        json={
            "client_name": "Test Agent",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "tools",
        },
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    await bob.sign_in(web, "bob")
    started = await bob.client.get(
        f"{web}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "state": "s1",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
            "scope": "tools",
            "resource": f"{web}/mcp",
        },
    )
    consent_url = started.headers["location"]
    page = await bob.client.get(consent_url)
    allowed = await bob.client.post(
        f"{web}/oauth/consent",
        params={"request": query_of(consent_url)["request"]},
        data={"csrf_token": page.text.split('name="csrf_token" value="')[1].split('"')[0], "decision": "allow"},
    )
    return client_id, query_of(allowed.headers["location"])["code"]


async def test_a_token_request_for_another_resource_gets_invalid_target_and_keeps_the_code(runtime, web, browser_factory):
    bob = browser_factory()
    client_id, code = await consented_code(web, bob)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": VERIFIER,
        "redirect_uri": REDIRECT_URI,
        "client_id": client_id,
    }
    async with httpx2.AsyncClient(timeout=10) as client:
        for resource in ("https://other.example/mcp", [f"{web}/mcp", "https://other.example/mcp"]):
            refused = await client.post(f"{web}/token", data={**exchange, "resource": resource})
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_target", refused.text
            assert "access_token" not in refused.json()
        assert rows(runtime, McpGrant) == [] and rows(runtime, McpToken) == []
        assert [row.used_at for row in rows(runtime, McpAuthorization)] == [None]  # the code is not burnt

        issued = await client.post(f"{web}/token", data={**exchange, "resource": f"{web}/mcp/"})
        assert issued.status_code == 200, issued.text
        tokens = issued.json()
        assert len(rows(runtime, McpGrant)) == 1 and len(rows(runtime, McpToken)) == 2

        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
        refused = await client.post(f"{web}/token", data={**refresh, "resource": "https://other.example/mcp"})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
        assert len(rows(runtime, McpToken)) == 2 and all(row.used_at is None for row in rows(runtime, McpToken))
        [grant] = rows(runtime, McpGrant)
        assert grant.revoked_at is None  # a refused resource is not a reuse

        rotated = await client.post(f"{web}/token", data={**refresh, "resource": f"{web}/mcp"})
        assert rotated.status_code == 200 and rotated.json()["refresh_token"] != tokens["refresh_token"]
        without = await client.post(
            f"{web}/token",
            data={"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"], "client_id": client_id},
        )
        assert without.status_code == 200  # naming no resource means the one the grant has


async def test_an_oversized_token_request_is_refused_before_the_sdk(web):
    async with httpx2.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{web}/token", data={"grant_type": "authorization_code", "code": "x" * 100_000})
    assert answer.status_code == 413 and answer.json()["error"] == "invalid_request"
