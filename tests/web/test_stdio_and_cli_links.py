"""Links from the command line and from a stdio server: `grantkeeper link` prints one, and a stdio server (as
Claude Desktop runs it) serves the link pages on a loopback listener beside the protocol, so the whole loop
works with no HTTP transport at all."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from simulators.seeding import seed_account
from tests.reauth.conftest import GITHUB_ALICE
from tests.support.web import outcome_of

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def stdio_server(env: dict[str, str], **extra: str) -> StdioServerParameters:
    """`grantkeeper serve` over stdio, its page listener on a free loopback port."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve"],
        cwd=str(ROOT),
        env={**os.environ, **env, "GRANTKEEPER_LISTEN_PORT": "0", "GRANTKEEPER_LOG_LEVEL": "info", **extra},
    )


async def test_stdio_server_serves_the_link_pages_and_the_next_call_works(runtime, settings, env, github_sim, user, tmp_path):
    account = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id=GITHUB_ALICE)
    github_sim.revoke()
    stderr_path = tmp_path / "server-stderr.log"

    with stderr_path.open("w") as errlog:
        async with stdio_client(stdio_server(env), errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            first = (await session.call_tool("github_search_issues", {"query": "bug"})).structured_content
            assert first["status"] == "reauth_required"
            link = first["magic_link"]
            assert link.startswith("http://127.0.0.1:") and ":8765/" not in link  # the listener's real port

            page = await user.reconnect(link)
            assert outcome_of(page) == "reconnected"
            again = (await session.call_tool("github_search_issues", {"query": "bug"})).structured_content

    assert again["status"] == "ok"
    assert runtime.vault.accounts.get(account.id).status == "active"
    log = stderr_path.read_text()
    assert "page_listener_started" in log and "reauthorized" in log
    assert link.rsplit("/", 1)[1] not in log


async def test_stdio_server_whose_page_port_is_taken_never_links_to_that_port(runtime, settings, env, github_sim, user, tmp_path):
    from server.web.listener import bind

    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id=GITHUB_ALICE)
    github_sim.revoke()
    taken = bind("127.0.0.1", 0)  # another process's listener, as far as the server can tell
    port = taken.getsockname()[1]
    stderr_path = tmp_path / "server-stderr.log"
    try:
        with stderr_path.open("w") as errlog:
            async with stdio_client(stdio_server(env, GRANTKEEPER_LISTEN_PORT=str(port)), errlog=errlog) as streams:
                async with ClientSession(*streams) as session:
                    await session.initialize()
                    listed = (await session.call_tool("accounts_list", {})).structured_content
                    reauth = (await session.call_tool("github_search_issues", {"query": "bug"})).structured_content
                    link = reauth["magic_link"]
                    page = await user.open(link)  # while the server runs: its own listener answers
    finally:
        taken.close()
    assert listed["status"] == "ok"
    assert link.startswith("http://127.0.0.1:") and f":{port}/" not in link
    assert "Reconnect GitHub" in page.text
    log = stderr_path.read_text()
    assert "page_listener_unavailable" in log and "page_listener_started" in log


async def test_link_command_prints_a_link_that_connects_the_named_users_account(
    runtime, slack_sim, web, user, cli, capsys, monkeypatch
):
    monkeypatch.setenv("GRANTKEEPER_PUBLIC_URL", web)

    assert await anyio.to_thread.run_sync(cli, "link", "slack", "--org", "acme", "--user", "bob") == 0
    printed = capsys.readouterr()
    link = printed.out.strip()
    assert link.startswith(f"{web}/connect/") and "bob (org acme)" in printed.err

    opened = await user.open(link)
    assert "Connect Slack" in opened.text and "bob (org acme)" in opened.text
    page = await user.reconnect(link, user_id="U0BOB")

    assert outcome_of(page) == "reconnected"
    bob = runtime.vault.accounts.find("acme", "bob", "slack")
    assert (bob.status, bob.provider_account_id) == ("active", "T0SIMTEAM:U0BOB")
    assert runtime.vault.accounts.find("acme", "alice", "slack") is None


def test_link_command_refuses_an_unknown_connector(cli, capsys):
    assert cli("link", "jira", "--org", "acme", "--user", "bob") == 2
    assert "unknown connector 'jira'" in capsys.readouterr().err
