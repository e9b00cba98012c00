"""`/metrics` optionally protected: behind a bearer token (GRANTKEEPER_METRICS_TOKEN, any other or no credential
refused), or only on a loopback listener of its own (GRANTKEEPER_METRICS_PORT) that `serve` starts beside the
public one, which then has no `/metrics` at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import anyio
import httpx2
import pytest

from server.web.security import bearer_matches
from tests.support.web import web_server
from tests.web.test_serve_command import ROOT

pytestmark = pytest.mark.anyio
TOKEN = "metrics-token-9d2f1c7e4b"


async def test_a_metrics_token_is_required_when_set(runtime, slack_sim):
    runtime.settings.metrics_token = TOKEN
    async with web_server(runtime) as url, httpx2.AsyncClient(timeout=10) as client:
        refused = [
            await client.get(f"{url}/metrics", headers=headers)
            for headers in (
                {},
                {"Authorization": "Bearer"},
                {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": f"Bearer {TOKEN[:-1]}"},
                {"Authorization": "Bearer " + "a" * 10_000},
            )
        ]
        allowed = await client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        health = await client.get(f"{url}/healthz")  # only /metrics is protected
    assert [response.status_code for response in refused] == [401] * 6
    assert all(response.headers["www-authenticate"].startswith("Bearer") for response in refused)
    assert all("grantkeeper_" not in response.text and TOKEN not in response.text for response in refused)
    assert allowed.status_code == 200 and "grantkeeper_tool_calls" in allowed.text
    assert health.status_code == 200


def test_bearer_comparison_takes_only_the_exact_token():
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN) and bearer_matches(f"bearer {TOKEN}", TOKEN)
    for header in ("", TOKEN, f"Bearer {TOKEN} extra", f"Token {TOKEN}", f"Bearer {TOKEN.upper()}", "Bearer ü"):
        assert not bearer_matches(header, TOKEN)


async def test_serve_puts_metrics_on_its_own_loopback_listener(env):
    process = await anyio.open_process(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, **env, "GRANTKEEPER_LOG_FORMAT": "json", "GRANTKEEPER_METRICS_PORT": "0"},
        stderr=subprocess.PIPE,
    )
    started: dict[str, str] = {}
    buffered = b""
    try:
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                buffered += chunk
                for line in buffered.decode(errors="replace").splitlines():
                    if line.startswith("{"):
                        record = json.loads(line)
                        if record["event"] in ("metrics_listener_started", "http_server_started"):
                            started[record["event"]] = record["url"]
                if len(started) == 2:
                    break
        metrics_url, main_url = started["metrics_listener_started"], started["http_server_started"]
        assert metrics_url.startswith("http://127.0.0.1:") and not metrics_url.startswith(main_url + "/")
        async with httpx2.AsyncClient(timeout=10) as client:
            apart = await client.get(metrics_url)
            public = await client.get(f"{main_url}/metrics")
        assert apart.status_code == 200 and "grantkeeper_tool_calls" in apart.text
        assert public.status_code == 404 and "grantkeeper_" not in public.text
    finally:
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            await process.wait()
