"""`grantkeeper demo`: the simulators on loopback, a vault in a temporary directory, and an agent session over
stdio that meets expiry, rotation, rate limits and revocation — and never sees a token."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from providers.simulators import GitHubSimulator, SimulatorServer, SlackSimulator
from providers.simulators.person import link_user

ROOT = Path(__file__).resolve().parents[1]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _show(result: Any) -> dict[str, Any]:
    content = result.structured_content or {}
    status = content.get("status", "?")
    _say(f"   -> status={status}")
    text = result.content[0].text if result.content else ""
    for line in text.splitlines()[:6]:
        _say(f"      {line}")
    return content


def simulator_environment(slack_url: str, github_url: str, *, google_url: str | None = None,
                          zendesk_url: str | None = None) -> dict[str, str]:
    """Settings that point grantkeeper at simulators (the demo, the tests and agent developers use them)."""
    extra: dict[str, str] = {}
    if google_url:
        extra |= {
            "GRANTKEEPER_GOOGLE_CLIENT_ID": "sim-google-client",
            "GRANTKEEPER_GOOGLE_CLIENT_SECRET": "sim-google-secret",
            "GRANTKEEPER_GOOGLE_API_BASE_URL": google_url,
            "GRANTKEEPER_GOOGLE_OAUTH_BASE_URL": google_url,
        }
    if zendesk_url:
        # Zendesk has no default host; its OAuth endpoints live on the same (per-customer) host as the API.
        extra |= {
            "GRANTKEEPER_ZENDESK_CLIENT_ID": "sim-zendesk-client",
            "GRANTKEEPER_ZENDESK_CLIENT_SECRET": "sim-zendesk-secret",
            "GRANTKEEPER_ZENDESK_API_BASE_URL": zendesk_url,
        }
    return {
        "GRANTKEEPER_SLACK_CLIENT_ID": "sim-slack-client",
        "GRANTKEEPER_SLACK_CLIENT_SECRET": "sim-slack-secret",
        "GRANTKEEPER_SLACK_API_BASE_URL": f"{slack_url}/api",
        "GRANTKEEPER_SLACK_OAUTH_BASE_URL": slack_url,
        "GRANTKEEPER_GITHUB_CLIENT_ID": "sim-github-client",
        "GRANTKEEPER_GITHUB_CLIENT_SECRET": "sim-github-secret",
        "GRANTKEEPER_GITHUB_API_BASE_URL": github_url,
        "GRANTKEEPER_GITHUB_OAUTH_BASE_URL": github_url,
        **extra,
    }


def _import_tokens(env: dict[str, str], connector: str, tokens: Any, expired: bool) -> None:
    import subprocess

    payload = {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
               "refresh_token_expires_in": tokens.refresh_token_expires_in}
    if expired:
        payload["expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    else:
        payload["expires_in"] = tokens.expires_in
    done = subprocess.run([sys.executable, "-m", "server", "accounts", "add", connector], input=json.dumps(payload),
                          env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"accounts add failed: {done.stderr}")
    _say(f"   {done.stdout.strip()}")


async def _agent_session(env: dict[str, str], slack: SlackSimulator, github: GitHubSimulator, server_log: Any) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=str(ROOT))
    async with stdio_client(params, errlog=server_log) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        _say(f"2. The agent connects over stdio and sees {len(tools)} tools: {', '.join(t.name for t in tools)}")

        _say("\n3. Our copy of the Slack token is already expired. The agent reads #general:")
        _show(await session.call_tool("slack_read_channel", {"channel": "C0GENERAL", "limit": 3}))
        _say(f"   Slack's token endpoint was hit {slack.counters.token_requests} time(s); the rotated refresh "
             "token is stored encrypted.")

        _say("\n4. Slack expires every token mid-session (HTTP 200 token_expired). The agent posts a message:")
        slack.expire_access_tokens()
        _show(await session.call_tool("slack_post_message", {"channel": "C0GENERAL", "text": "Deploy finished ✅"}))
        _say(f"   Refreshed once more and retried once: token endpoint hits = {slack.counters.token_requests}, "
             f"reuse detections = {slack.counters.reuse_detections}.")

        _say("\n5. Slack rate-limits the next call (429, Retry-After: 1). The agent reads again:")
        slack.rate_limit(count=1, retry_after=1)
        _show(await session.call_tool("slack_read_channel", {"channel": "C0GENERAL", "limit": 1}))

        _say("\n6. The agent files a GitHub issue, then repeats the call with the same idempotency key:")
        issue = {"repo": "acme/webshop", "title": "Checkout fails on Safari", "body": "Seen in the deploy channel.",
                 "idempotency_key": "demo-checkout-safari"}
        _show(await session.call_tool("github_create_issue", issue))
        _show(await session.call_tool("github_create_issue", issue))
        _say(f"   Issues in acme/webshop: {len(github.issues('acme/webshop'))}")

        _say("\n7. The GitHub grant is revoked at the provider. The agent searches issues:")
        github.revoke()
        revoked = _show(await session.call_tool("github_search_issues", {"query": "checkout"}))
        _say(f"   The token endpoint was tried {github.counters.token_requests} time(s) in all; no retry storm. "
             f"The agent got a single-use link to hand to the user (reason: {revoked.get('reason')}).")
        again = _show(await session.call_tool("github_search_issues", {"query": "checkout"}))
        _say(f"   Calling again before the user acts answers at once ({again.get('status')}); the token endpoint "
             f"count is still {github.counters.token_requests}.")

        _say("\n8. alice opens the link, presses Continue and approves at the GitHub simulator's consent page:")
        async with link_user() as alice:
            page = await alice.reconnect(revoked["magic_link"])
        _say(f"   grantkeeper's page: HTTP {page.status_code}, "
             f"{'reconnected' if 'reconnected' in page.text else 'NOT reconnected'}")
        _say("   The agent calls the same tool again, on the same account:")
        _show(await session.call_tool("github_search_issues", {"query": "checkout"}))

        _say("\n9. The agent asks which accounts work:")
        _show(await session.call_tool("accounts_list", {}))


def run_demo() -> int:
    logging.getLogger("grantkeeper.simulators").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="grantkeeper-demo-") as home, \
            SimulatorServer(SlackSimulator()) as slack_server, SimulatorServer(GitHubSimulator()) as github_server:
        slack, github = slack_server.app, github_server.app
        env = {**os.environ, **simulator_environment(slack_server.url, github_server.url),
               "GRANTKEEPER_HOME": home, "GRANTKEEPER_ORG": "acme", "GRANTKEEPER_USER": "alice",
               "GRANTKEEPER_LOG_LEVEL": "info", "GRANTKEEPER_LOG_FORMAT": "console",
               # The magic-link pages are served beside stdio on a free loopback port; links follow it.
               "GRANTKEEPER_LISTEN_PORT": "0"}
        env.pop("GRANTKEEPER_DATABASE_URL", None)
        env.pop("GRANTKEEPER_VAULT_KEY", None)
        env.pop("GRANTKEEPER_PUBLIC_URL", None)
        _say("grantkeeper demo — Slack and GitHub simulators on loopback, a fresh SQLite vault in " + home)
        _say(f"   Slack simulator {slack_server.url}   GitHub simulator {github_server.url}\n")
        _say("1. alice already holds tokens and imports them (`grantkeeper accounts add`):")
        _import_tokens(env, "slack", slack.issue_grant(), expired=True)
        _import_tokens(env, "github", github.issue_grant(), expired=False)
        log_path = Path(home) / "server.log"
        with log_path.open("w") as server_log:
            anyio.run(_agent_session, env, slack, github, server_log)
        events = [line for line in log_path.read_text().splitlines() if "grantkeeper.events" in line]
        _say(f"\nWhat the operator saw: {len(events)} lifecycle events on the server's stderr (secrets redacted):")
        for line in events:
            _say("   " + line.split(" ", 1)[1])
        raw = b"".join(p.read_bytes() for p in Path(home).glob("grantkeeper.db*"))
        leaked = any(prefix in raw for prefix in (b"xoxe", b"ghu_", b"ghr_"))
        _say(f"\nThe vault file holds {len(raw)} bytes and {'SOME' if leaked else 'no'} plaintext token.")
    return 1 if leaked else 0
