"""`grantkeeper serve --transport http|sse` as an operator runs it: one process, the pages and the MCP
transports on one port, API keys required, a clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from server.auth import create_api_key
from tests.support.web import call_structured, http_session, sse_session

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


async def started_server(env: dict[str, str], transport: str) -> tuple[anyio.abc.Process, str]:
    """Start `grantkeeper serve` on a free port; returns the process and its URL (read from its JSON log)."""
    process = await anyio.open_process(
        [sys.executable, "-m", "server", "serve", "--transport", transport, "--port", "0"],
        cwd=ROOT,
        env={**os.environ, **env, "GRANTKEEPER_LOG_FORMAT": "json", "GRANTKEEPER_LOG_LEVEL": "info"},
        stderr=subprocess.PIPE,
    )
    buffered = b""
    with anyio.fail_after(30):
        async for chunk in process.stderr:
            buffered += chunk
            for line in buffered.decode(errors="replace").splitlines():
                if '"http_server_started"' in line:
                    return process, json.loads(line)["url"]
    raise AssertionError(f"the server did not start: {buffered.decode(errors='replace')[-2000:]}")


async def stop(process: anyio.abc.Process) -> int:
    process.send_signal(signal.SIGTERM)
    with anyio.fail_after(20):
        return await process.wait()


async def test_serve_http_offers_streamable_http_and_sse_behind_keys_and_stops_cleanly(runtime, env):
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    process, url = await started_server(env, "http")
    try:
        async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.post("/mcp", json={})).status_code == 401
        async with http_session(url, key) as session:
            assert (await call_structured(session, "accounts_list"))["user"] == "alice"
        async with sse_session(url, key) as session:
            assert (await call_structured(session, "accounts_list"))["user"] == "alice"
    finally:
        code = await stop(process)
    assert code == 0


async def test_serve_sse_offers_only_sse(runtime, env):
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    process, url = await started_server(env, "sse")
    try:
        async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.post("/mcp", json={}, headers={"Authorization": f"Bearer {key}"})).status_code == 404
        async with sse_session(url, key) as session:
            assert (await call_structured(session, "accounts_list"))["status"] == "ok"
    finally:
        assert await stop(process) == 0
