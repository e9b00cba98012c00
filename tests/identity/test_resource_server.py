"""Resource-server-only mode: the organisation's authorization server (the OIDC simulator standing in) issues JWT
access tokens; /mcp accepts one only when issuer, audience (this server's MCP URL), expiry, not-before, algorithm
and signature all check out, and maps it to org/user. Every bad token gets a 401 with the spec's challenge."""

from __future__ import annotations

import httpx2
import pytest

from server.auth import create_api_key
from simulators import OIDCSimulator
from tests.support.web import call_structured, http_session, sse_session

pytestmark = pytest.mark.anyio
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


@pytest.fixture
def env(env: dict[str, str], idp: OIDCSimulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    extra = {"GRANTKEEPER_MCP_AUTHORIZATION": "external", "GRANTKEEPER_MCP_EXTERNAL_ISSUER": idp.issuer or ""}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return {**env, **extra}


async def test_protected_resource_metadata_names_the_external_issuer(web, idp):
    async with httpx2.AsyncClient(timeout=10) as client:
        metadata = (await client.get(f"{web}/.well-known/oauth-protected-resource/mcp")).json()
        own_server = await client.get(f"{web}/.well-known/oauth-authorization-server")
    assert metadata["resource"] == f"{web}/mcp" and metadata["authorization_servers"] == [idp.issuer]
    assert own_server.status_code == 404  # grantkeeper is not an authorization server in this mode


@pytest.mark.parametrize("session", [http_session, sse_session])
async def test_a_good_token_acts_as_its_person_on_both_transports(web, idp, session):
    token = idp.forge("carol", aud=f"{web}/mcp", extra={"scope": "tools"})
    async with session(web, token) as agent:
        listed = await call_structured(agent, "accounts_list")
    assert (listed["org"], listed["user"]) == ("globex", "carol")


@pytest.mark.parametrize(
    "bend",
    [
        {"aud": "sim-oidc-client"},  # an id_token presented as an access token
        {"iss": "https://evil.example"},
        {"expires_in": -600},
        {"not_before_in": 600},
        {"alg": "none"},
        {"bad_signature": True},
        {"unknown_kid": True},
        {"aud": "https://other.example/mcp"},  # minted for another resource
    ],
    ids=[
        "wrong_audience",
        "wrong_issuer",
        "expired",
        "not_yet_valid",
        "alg_none",
        "bad_signature",
        "unknown_kid",
        "another_resource",
    ],
)
async def test_bad_tokens_get_401_with_the_challenge(web, idp, bend):
    options = {"aud": f"{web}/mcp", **bend}
    token = idp.forge("alice", **options)
    async with httpx2.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{web}/mcp", json=PING, headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        )
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert f'resource_metadata="{web}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert token not in answer.text


async def test_api_keys_keep_working_beside_external_tokens(runtime, web):
    key = create_api_key(runtime.vault, org="acme", user="bob").key
    async with http_session(web, key) as agent:
        listed = await call_structured(agent, "accounts_list")
    assert (listed["org"], listed["user"]) == ("acme", "bob")


async def test_a_rotated_key_is_fetched_once_and_forged_kids_do_not_flood_the_issuer(web, idp):
    async with http_session(web, idp.forge("alice", aud=f"{web}/mcp")):
        pass
    idp.rotate_keys()
    async with http_session(web, idp.forge("alice", aud=f"{web}/mcp")):
        pass
    fetched = idp.counters.endpoint("jwks")
    async with httpx2.AsyncClient(timeout=10) as client:
        for _ in range(5):
            forged = idp.forge("alice", aud=f"{web}/mcp", unknown_kid=True)
            answer = await client.post(f"{web}/mcp", json=PING, headers={"Authorization": f"Bearer {forged}"})
            assert answer.status_code == 401
    assert fetched == 2 and idp.counters.endpoint("jwks") == fetched
