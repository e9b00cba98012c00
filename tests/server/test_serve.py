"""`grantkeeper serve`: startup validation runs beside the transport; `--require-healthy` refuses to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from simulators.seeding import seed_account
from tests.support.holds import HoldRequests

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


def grantkeeper_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_") or k in ("PATH", "HOME")}


def test_serve_require_healthy_refuses_to_start_naming_the_accounts_to_reauthorize(runtime_sync, settings, slack_sim):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), user="alice")
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), user="bob")
    slack_sim.revoke(grant_id=slack_sim.grants.grants()[0]["grant_id"])

    ended = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--require-healthy"],
        cwd=ROOT,
        env=grantkeeper_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert ended.returncode == 1
    refusal = ended.stderr[ended.stderr.index("grantkeeper: refusing to start") :]
    assert "1 account(s) need attention" in refusal
    assert "acme/alice/slack: reauth_required (token_revoked)" in refusal
    assert "acme/bob/slack" not in refusal  # checked and healthy
    assert ended.stdout == ""  # stdout belongs to the protocol


async def test_serve_answers_while_startup_validation_is_still_probing(runtime_sync, settings, slack_server, slack_sim):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant())
    hold = HoldRequests(slack_sim, "/auth.test")  # health probes wait until released
    slack_server.app = hold
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=grantkeeper_env(), cwd=str(ROOT))
    try:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert await anyio.to_thread.run_sync(hold.arrived.wait, 30), "startup validation never probed"
            tools = await session.list_tools()  # answered while the probe is still held at the provider
            assert "slack_read_channel" in {tool.name for tool in tools.tools}
            assert runtime_sync.vault.events.recent(kind="health_checked") == []
            hold.release.set()
    finally:
        hold.release.set()


async def test_serve_require_healthy_starts_when_every_account_is_healthy(runtime_sync, settings, slack_sim):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant())
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "server", "serve", "--require-healthy"], env=grantkeeper_env(), cwd=str(ROOT)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("slack_read_channel", {"channel": "C0GENERAL", "limit": 1})
    assert result.structured_content["status"] == "ok"
    assert slack_sim.counters.endpoint("auth.test") >= 1  # checked before the transport started
