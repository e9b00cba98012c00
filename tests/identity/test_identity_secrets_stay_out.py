"""After a whole run — sign-in (with a refused forged id_token first), consent, code exchange, a refresh, a replayed
refresh token, a refused forged consent, logout — no id_token, access token, refresh token, session id, code,
state or consent request token appears in the log (debug level, JSON) or in any page or error grantkeeper served."""

from __future__ import annotations

import httpx2
import pytest

from simulators import sign_in_over_http
from tests.identity.conftest import Browser, query_of
from tests.identity.test_signed_in_isolation import REDIRECT_URI
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override

pytestmark = pytest.mark.anyio


@pytest.fixture
def env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GRANTKEEPER_MCP_AUTHORIZATION", "grantkeeper")
    return {**env, "GRANTKEEPER_MCP_AUTHORIZATION": "grantkeeper"}


async def test_no_identity_secret_in_logs_pages_or_errors(runtime, web, idp, log_output):
    served: list[httpx2.Response] = []
    secrets: dict[str, str] = {}

    async def keep(response: httpx2.Response) -> None:
        await response.aread()
        if str(response.url).startswith(web):
            served.append(response)

    async with httpx2.AsyncClient(timeout=15, event_hooks={"response": [keep]}) as client:
        browser = Browser(client)
        idp.bend_next_id_token = {"aud": "someone-else"}
        refused = await browser.sign_in(web, "alice")
        assert refused.status_code == 502
        secrets["refused id_token"] = idp.issued_id_tokens[-1]

        started = await client.get(f"{web}/login")
        secrets["sign-in state"] = query_of(started.headers["location"])["state"]
        back = await sign_in_over_http(client, started.headers["location"], "alice")
        secrets["IdP code"] = query_of(back)["code"]
        await client.get(back)
        secrets["id_token"] = idp.issued_id_tokens[-1]
        secrets["session id"] = client.cookies.get("gk_session")

        registered = (
            await client.post(
                f"{web}/register",
                json={
                    "redirect_uris": [REDIRECT_URI],
                    "token_endpoint_auth_method": "none",
                    "client_name": "agent",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                },
            )
        ).json()
        consent = (
            await client.get(
                f"{web}/authorize",
                params={
                    "response_type": "code",
                    "client_id": registered["client_id"],
                    "redirect_uri": REDIRECT_URI,
                    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    "code_challenge_method": "S256",
                    "state": "client-state",
                },
            )
        ).headers["location"]
        secrets["consent request"] = query_of(consent)["request"]
        page = await client.get(consent)
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        await client.post(
            f"{web}/oauth/consent",
            params={"request": secrets["consent request"]},
            data={"csrf_token": "0" * 64, "decision": "allow"},
        )
        answered = await client.post(
            f"{web}/oauth/consent", params={"request": secrets["consent request"]}, data={"csrf_token": csrf, "decision": "allow"}
        )
        secrets["MCP code"] = query_of(answered.headers["location"])["code"]
        tokens = (
            await client.post(
                f"{web}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": secrets["MCP code"],
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                    "client_id": registered["client_id"],
                },
            )
        ).json()
        secrets["access token"], secrets["refresh token"] = tokens["access_token"], tokens["refresh_token"]
        replayed_code = await client.post(
            f"{web}/token",
            data={
                "grant_type": "authorization_code",
                "code": secrets["MCP code"],
                "redirect_uri": REDIRECT_URI,
                "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                "client_id": registered["client_id"],
            },
        )
        assert replayed_code.status_code == 400
        rotated = (
            await client.post(
                f"{web}/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "client_id": registered["client_id"],
                },
            )
        ).json()
        secrets["rotated access token"] = rotated["access_token"]
        secrets["rotated refresh token"] = rotated["refresh_token"]
        reuse = await client.post(
            f"{web}/token",
            data={"grant_type": "refresh_token", "client_id": registered["client_id"], "refresh_token": tokens["refresh_token"]},
        )
        assert reuse.status_code == 400
        refused_mcp = await client.post(
            f"{web}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": f"Bearer {rotated['access_token']}"},
        )
        assert refused_mcp.status_code == 401
        await client.post(f"{web}/logout", data={"csrf_token": "0" * 64})

    output = log_output.getvalue()
    assert "mcp_refresh_token_reused" in output and "sign_in_failed" in output  # the log did capture the run
    assert all(secrets.values())
    leaked_to_log = [name for name, value in secrets.items() if value in output]
    assert leaked_to_log == []
    # Pages and errors: every HTML page and every error body served. (The token endpoint's success answer, the
    # Set-Cookie header and redirect Locations carry secrets to their holder by design; they are not pages.)
    pages = [
        response.text
        for response in served
        if response.headers.get("content-type", "").startswith("text/html") or response.status_code >= 400
    ]
    assert len(pages) >= 5
    # The consent page's own form names its request (as a link's page is reached by its token); nothing else may.
    in_pages = {name: value for name, value in secrets.items() if name != "consent request"}
    leaked_to_pages = [name for name, value in in_pages.items() for text in pages if value in text]
    assert leaked_to_pages == []
