"""`serve` over stdio answers before its runtime is open: tool requests wait at the start-up gate, then succeed; a
start-up that failed answers them with an error instead of leaving them waiting."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from server.app import StartupFailed, StartupGate, install_tools, tool_server
from simulators.seeding import seed_account

pytestmark = pytest.mark.anyio


async def test_a_tool_call_before_the_tools_are_installed_waits_for_them_and_succeeds(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    server = tool_server()
    gate = server.gate = StartupGate()
    results = {}
    async with Client(server, raise_exceptions=True) as client, anyio.create_task_group() as group:

        async def call_early() -> None:
            results["call"] = await client.call_tool("slack_read_channel", {"channel": "C0GENERAL", "limit": 1})

        async def list_early() -> None:
            results["tools"] = await client.list_tools()

        group.start_soon(call_early)
        group.start_soon(list_early)
        await anyio.wait_all_tasks_blocked()
        assert results == {}  # both are waiting at the gate, neither was refused

        install_tools(server, runtime, stdio_identity=True)
        gate.open()

    assert results["call"].structured_content["status"] == "ok"
    assert "slack_read_channel" in {tool.name for tool in results["tools"].tools}


async def test_a_failed_start_up_answers_waiting_requests_with_an_error():
    server = tool_server()
    gate = server.gate = StartupGate()
    gate.fail(OSError("the vault's disk is gone"))
    with pytest.raises(StartupFailed):
        await server.list_tools()
    async with Client(server) as client:
        result = await client.call_tool("slack_read_channel", {"channel": "C0GENERAL"})
    assert result.is_error
    assert "failed to start" in str(result.content) and "disk" not in str(result.content)
