"""GRANTKEEPER_HTTP_STATELESS: two workers on one vault answer one client's requests in turn, with no session
affinity — what a plain round-robin load balancer does."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import httpx2
import pytest

from server.auth import create_api_key
from server.runtime import Runtime
from server.settings import Settings
from simulators.seeding import seed_account
from tests.support.web import web_server

pytestmark = pytest.mark.anyio
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def rpc(method: str, params: dict, ident: int) -> dict:
    return {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}


async def post(client, url: str, body: dict) -> dict:
    response = await client.post(f"{url}/mcp", json=body)
    assert response.status_code == 200, response.text
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    return json.loads(text)


@asynccontextmanager
async def two_workers(monkeypatch, slack_sim, *, stateless: bool):
    """Two workers (each its own runtime and web app) on one vault, and a client holding Alice's key."""
    monkeypatch.setenv("GRANTKEEPER_HTTP_STATELESS", "true" if stateless else "false")
    first, second = Runtime.open(Settings()), Runtime.open(Settings())
    seed_account(first.settings, first.vault, "slack", slack_sim.issue_grant(), expired=True)
    key = create_api_key(first.vault, org="acme", user="alice").key
    try:
        async with (
            web_server(first, ("http",)) as url_a,
            web_server(second, ("http",)) as url_b,
            httpx2.AsyncClient(headers={**ACCEPT, "Authorization": f"Bearer {key}"}, timeout=30) as client,
        ):
            yield client, url_a, url_b
    finally:
        await first.aclose()
        await second.aclose()


async def initialize(client, url: str) -> dict:
    return await post(
        client,
        url,
        rpc(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "round-robin", "version": "1"}},
            1,
        ),
    )


async def test_two_stateless_workers_serve_one_client_in_turn(env, slack_sim, monkeypatch):
    read = {"name": "slack_read_channel", "arguments": {"channel": "C0GENERAL", "limit": 1}}
    async with two_workers(monkeypatch, slack_sim, stateless=True) as (client, url_a, url_b):
        hello = await initialize(client, url_a)
        listed = await post(client, url_b, rpc("tools/list", {}, 2))
        called = await post(client, url_a, rpc("tools/call", read, 3))
        again = await post(client, url_b, rpc("tools/call", read, 4))

    assert hello["result"]["serverInfo"]["name"] == "grantkeeper"
    assert "slack_read_channel" in {tool["name"] for tool in listed["result"]["tools"]}
    assert called["result"]["structuredContent"]["status"] == "ok"
    assert again["result"]["structuredContent"]["status"] == "ok"
    assert slack_sim.counters.token_requests == 1


async def test_without_the_setting_a_second_worker_knows_no_session_of_the_first(env, slack_sim, monkeypatch):
    async with two_workers(monkeypatch, slack_sim, stateless=False) as (client, url_a, url_b):
        await initialize(client, url_a)
        refused = await client.post(f"{url_b}/mcp", json=rpc("tools/list", {}, 2))
    assert refused.status_code in (400, 404)
