"""Tool results are the user's content (messages, issues, mail): at debug level the log still records that a call
happened and how it ended, never what it returned — over stdio and over streamable HTTP, the SDK's and the HTTP
client's loggers included."""

from __future__ import annotations

import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client

from server.auth import create_api_key
from server.monitoring.logging import get_logger
from simulators.seeding import seed_account
from tests.reauth.conftest import SLACK_ALICE
from tests.support.web import http_session, web_server
from tests.web.test_stdio_and_cli_links import stdio_server

pytestmark = pytest.mark.anyio
CONTENT = "quarterly-numbers-7c1e4d are confidential"
READ = {"channel": "C0GENERAL", "limit": 5}


async def test_debug_logs_of_an_http_tool_call_hold_no_result_body(runtime, settings, slack_sim, log_output):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.seed_message("C0GENERAL", CONTENT)
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    async with web_server(runtime) as url, http_session(url, key) as agent:
        result = (await agent.call_tool("slack_read_channel", READ)).structured_content
    assert CONTENT in str(result)  # the tool did return it
    get_logger("grantkeeper.test").debug("debug_records_are_written")
    output = log_output.getvalue()
    assert "debug_records_are_written" in output
    assert "quarterly-numbers-7c1e4d" not in output


async def test_debug_logs_of_a_stdio_tool_call_hold_no_result_body(runtime, settings, env, slack_sim, tmp_path):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.seed_message("C0GENERAL", CONTENT)
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as errlog:
        async with (
            stdio_client(stdio_server(env, GRANTKEEPER_LOG_LEVEL="debug"), errlog=errlog) as streams,
            ClientSession(*streams) as agent,
        ):
            await agent.initialize()
            result = (await agent.call_tool("slack_read_channel", READ)).structured_content
    assert CONTENT in str(result)
    output = stderr_path.read_text()
    assert '"level": "debug"' in output  # debug logging was on
    assert "quarterly-numbers-7c1e4d" not in output
