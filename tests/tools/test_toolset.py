"""The machinery every tool shares (tools/toolset.py): tools are importable typed functions named once, and every
call — on an account or not, run or refused — is counted once, by `Toolset.call`."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest
from mcp.types import CallToolResult

from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client
from tools import accounts, registry
from tools.toolset import Tool

pytestmark = pytest.mark.anyio


def counted(runtime, tool: str, status: str) -> float:
    value = runtime.metrics.registry.get_sample_value("grantkeeper_tool_calls_total", {"tool": tool, "status": status})
    return value or 0.0


def timed(runtime, tool: str) -> float:
    return runtime.metrics.registry.get_sample_value("grantkeeper_tool_call_seconds_count", {"tool": tool}) or 0.0


@pytest.mark.parametrize("tool", [*registry.BUILTIN, *accounts.tools(["slack"])], ids=lambda t: t.name)
def test_a_builtin_tool_is_a_module_level_function_with_its_result_in_its_return_annotation(tool: Tool) -> None:
    fn = tool.fn if tool.name != "accounts.connect" else accounts.connect  # its enum of connectors is added later
    module = importlib.import_module(fn.__module__)
    assert getattr(module, fn.__name__) is fn  # importable, not a closure inside a registration function
    hints = typing.get_type_hints(fn, include_extras=True)
    returned, result = typing.get_args(hints["return"])
    assert returned is CallToolResult and result.__name__.endswith("Result")
    parameters = inspect.signature(fn).parameters
    assert parameters["ctx"].default is inspect.Parameter.empty  # the SDK's Context, always given: no `= None`
    assert ("account" in parameters) == tool.per_account


async def test_every_kind_of_call_is_counted_once(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    async with mcp_client(runtime) as client:
        assert (await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": 1}))["status"] == "ok"
        assert (await call(client, "accounts_list"))["status"] == "ok"
        assert (await call(client, "slack_read_channel", {"channel": "#general"}))["status"] == "invalid_input"
        refused = await call(client, "slack_request", {"method": "GET", "path": "/../admin"})
        assert refused["reason"] == "unsafe_path"

    assert counted(runtime, "slack.read_channel", "ok") == 1
    assert counted(runtime, "accounts.list", "ok") == 1  # the accounts tools are counted like any other
    assert counted(runtime, "slack.read_channel", "invalid_input") == 1
    assert counted(runtime, "slack.request", "invalid_input") == 1
    # A call refused for its arguments never ran: its latency is not the tool's.
    assert (timed(runtime, "slack.read_channel"), timed(runtime, "accounts.list"), timed(runtime, "slack.request")) == (1, 1, 0)


async def test_an_unknown_tool_name_mints_no_metric(runtime):
    async with mcp_client(runtime) as client:
        result = await client.call_tool("no_such_tool", {})
    assert result.is_error
    assert "no_such_tool" not in runtime.metrics.render().decode()
