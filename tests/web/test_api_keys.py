"""API keys: printed once, stored as a hash, listed without the secret, revocable; and no valid key, no MCP."""

from __future__ import annotations

import json

import httpx2
import pytest
from sqlmodel import Session, select

from server.auth import create_api_key
from server.vault.models import ApiKey
from tests.support.web import http_session, sse_session

pytestmark = pytest.mark.anyio


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(runtime_sync, cli, capsys):
    assert cli("keys", "create", "--org", "acme", "--user", "alice", "--description", "ci agent") == 0
    created = capsys.readouterr()
    key = created.out.strip()
    assert key.startswith("gk_") and len(key) > 40
    assert "shown only now" in created.err and key not in created.err

    with Session(runtime_sync.vault.engine) as session:
        [row] = session.exec(select(ApiKey)).all()
    assert key not in json.dumps(row.model_dump(), default=str)  # only the SHA-256 is stored
    assert (row.org, row.user, row.description, row.prefix) == ("acme", "alice", "ci agent", key[:10])

    assert cli("keys", "list", "--json") == 0
    listed = capsys.readouterr().out
    assert json.loads(listed)[0]["prefix"] == key[:10] and key not in listed

    assert cli("keys", "revoke", key[:10]) == 0
    assert "revoked" in capsys.readouterr().out
    assert runtime_sync.vault.api_keys.find(key) is None
    assert cli("keys", "revoke", key[:10]) == 2  # nothing active left by that prefix
    assert "no active API key" in capsys.readouterr().err


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer gk_not-a-key-at-all-0123456789", "Bearer gk_", "Basic YTpi"],
    ids=["no-key", "unknown-key", "bare-prefix", "basic"],
)
async def test_requests_without_a_valid_key_get_401_on_mcp_and_sse(runtime, web, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
    }
    async with httpx2.AsyncClient(base_url=web, headers=headers, timeout=10) as client:
        mcp = await client.post("/mcp", json=initialize, headers={"Accept": "application/json, text/event-stream"})
        sse = await client.get("/sse", headers={"Accept": "text/event-stream"})
        messages = await client.post("/messages/?session_id=00000000000000000000000000000000", json=initialize)

    for response in (mcp, sse, messages):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_key_is_refused_from_the_next_request_on(runtime, web):
    issued = create_api_key(runtime.vault, org="acme", user="alice")
    async with http_session(web, issued.key) as session:
        assert (await session.list_tools()).tools

    runtime.vault.api_keys.revoke(issued.record.id)

    async with httpx2.AsyncClient(base_url=web, timeout=10) as client:
        response = await client.get("/sse", headers={"Authorization": f"Bearer {issued.key}"})
    assert response.status_code == 401


async def test_sse_transport_acts_for_the_keys_identity(runtime, web, settings, slack_sim):
    issued = create_api_key(runtime.vault, org="acme", user="bob")
    async with sse_session(web, issued.key) as session:
        result = await session.call_tool("accounts_list", {})
    assert result.structured_content["status"] == "ok"
    assert (result.structured_content["org"], result.structured_content["user"]) == ("acme", "bob")


async def test_healthz_answers_without_a_key(runtime, web):
    async with httpx2.AsyncClient(base_url=web, timeout=10) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
