"""A third-party client: the MCP Inspector CLI lists and calls grantkeeper's tools over stdio, and over streamable
HTTP with an `Authorization: Bearer` API key. Needs node and npx (the package comes from the npm registry on first
use); without them these tests skip and say so."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import anyio
import pytest

from server.auth import create_api_key
from simulators.seeding import seed_account

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
TIMEOUT_SECONDS = 240  # the first run downloads the Inspector

if shutil.which("npx") is None or shutil.which("node") is None:  # pragma: no cover - depends on the machine
    pytest.skip("Inspector CLI tests need node and npx (node 20+; CI installs them)", allow_module_level=True)


async def inspector(*arguments: str) -> tuple[int, dict | None, str]:
    """Run `npx @modelcontextprotocol/inspector --cli …`; returns (exit code, JSON output or None, stderr)."""
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    with anyio.fail_after(TIMEOUT_SECONDS):
        done = await anyio.run_process(["npx", "-y", INSPECTOR, "--cli", *arguments], cwd=ROOT, env=env, check=False)
    out = done.stdout.decode()
    try:
        parsed = json.loads(out[out.index("{") :]) if "{" in out else None
    except ValueError:
        parsed = None
    return done.returncode, parsed, done.stderr.decode()[-3000:]


def server_env_flags(env: dict[str, str]) -> list[str]:
    flags = []
    for key, value in {**env, "GRANTKEEPER_LISTEN_PORT": "0", "GRANTKEEPER_LOG_LEVEL": "warning"}.items():
        flags += ["-e", f"{key}={value}"]
    return flags


async def test_inspector_lists_and_calls_a_tool_over_stdio(runtime, settings, env, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    command = [sys.executable, "-m", "server", "serve", *server_env_flags(env)]

    code, listed, err = await inspector(*command, "--method", "tools/list")
    assert code == 0, err
    assert {"slack_read_channel", "github_create_issue", "accounts_connect"} <= {t["name"] for t in listed["tools"]}

    code, called, err = await inspector(
        *command, "--method", "tools/call", "--tool-name", "slack_read_channel", "--tool-arg", "channel=C0GENERAL", "limit=2"
    )
    assert code == 0, err
    assert called["structuredContent"]["status"] == "ok"
    assert len(called["structuredContent"]["messages"]) == 2


async def test_inspector_lists_and_calls_a_tool_over_streamable_http_with_a_bearer_key(runtime, settings, slack_sim, web):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    target = [f"{web}/mcp", "--transport", "http", "--header", f"Authorization: Bearer {key}"]

    code, listed, err = await inspector(*target, "--method", "tools/list")
    assert code == 0, err
    assert "slack_read_channel" in {t["name"] for t in listed["tools"]}

    code, called, err = await inspector(*target, "--method", "tools/call", "--tool-name", "accounts_list")
    assert code == 0, err
    assert (called["structuredContent"]["org"], called["structuredContent"]["user"]) == ("acme", "alice")

    code, read, err = await inspector(
        *target, "--method", "tools/call", "--tool-name", "slack_read_channel", "--tool-arg", "channel=C0GENERAL", "limit=1"
    )
    assert code == 0, err
    assert read["structuredContent"]["status"] == "ok"

    code, refused, err = await inspector(f"{web}/mcp", "--transport", "http", "--method", "tools/list")
    assert (code, refused) == (3, None) and "auth_required" in err  # no key: a 401, which it reports as auth needed
