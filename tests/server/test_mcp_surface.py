"""What an MCP client sees: tool names, input and output schemas, annotations — in memory and over stdio."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.runtime import Runtime
from server.settings import Settings
from simulators.seeding import seed_account
from tests.support.mcp import mcp_client

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
UNDERSCORE = {
    "slack_read_channel",
    "slack_post_message",
    "github_create_issue",
    "github_search_issues",
    "gmail_search_messages",
    "gmail_send_message",
    "calendar_create_event",
    "calendar_list_events",
    "zendesk_create_ticket",
    "zendesk_list_tickets",
    "accounts_list",
    "accounts_connect",
    # the guarded proxy of every connector (tools/proxy.py)
    "slack_request",
    "github_request",
    "google_request",
    "zendesk_request",
}
STATUSES = {"ok", "reauth_required", "admin_action_required", "rate_limited", "upstream_error", "invalid_input"}


def assert_discriminated_output(tool) -> None:
    schema = tool.output_schema
    assert schema["type"] == "object"
    branches = [schema["$defs"][ref["$ref"].rsplit("/", 1)[1]] for ref in schema["oneOf"]]
    assert {branch["properties"]["status"]["const"] for branch in branches} == STATUSES


async def test_tools_are_listed_with_underscore_names_and_full_schemas(runtime):
    async with mcp_client(runtime) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == UNDERSCORE
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert_discriminated_output(tool)
    assert tools["slack_read_channel"].input_schema["required"] == ["channel"]
    assert tools["slack_read_channel"].annotations.read_only_hint is True
    assert tools["slack_post_message"].annotations.read_only_hint is False
    assert tools["slack_post_message"].annotations.idempotent_hint is False
    assert tools["github_create_issue"].annotations.idempotent_hint is True  # with its idempotency key
    assert all(tool.annotations.open_world_hint for tool in tools.values())


async def test_the_dotted_setting_exposes_canonical_names(env, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_TOOL_NAMES", "dotted")
    runtime = Runtime.open(Settings())
    try:
        async with mcp_client(runtime) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
    finally:
        await runtime.aclose()
    assert names == {name.replace("_", ".", 1) for name in UNDERSCORE}


async def test_a_real_stdio_subprocess_lists_and_calls_tools(env, settings, slack_sim, runtime_sync):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), expired=True)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "server", "serve"], cwd=str(ROOT), env={**os.environ, **env}
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        result = await session.call_tool("slack_read_channel", {"channel": "C0GENERAL", "limit": 3})

    assert set(tools) == UNDERSCORE
    assert_discriminated_output(tools["slack_read_channel"])
    assert result.is_error is False
    assert result.structured_content["status"] == "ok"
    assert len(result.structured_content["messages"]) == 3
    assert slack_sim.counters.token_requests == 1


async def test_bad_arguments_are_an_invalid_input_result_naming_the_argument_not_echoing_it(runtime):
    from tests.support.mcp import call

    secretish = "xoxb-" + "9" * 5000  # wrong type and huge: neither the value nor its size comes back
    async with mcp_client(runtime) as client:
        wrong_type = await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": secretish})
        missing = await call(client, "slack_read_channel", {})
        unknown_choice = await call(client, "accounts_connect", {"connector": "../../etc/passwd"})

    assert (wrong_type["status"], wrong_type["reason"], wrong_type["connector"]) == (
        "invalid_input",
        "invalid_arguments",
        "slack",
    )
    assert "limit" in wrong_type["next_step"] and "xoxb" not in str(wrong_type)
    assert len(wrong_type["next_step"]) < 1000
    assert missing["status"] == "invalid_input" and "channel" in missing["next_step"]
    assert unknown_choice["status"] == "invalid_input" and "connector" in unknown_choice["next_step"]
    assert "passwd" not in str(unknown_choice)
