"""Builds the MCP server: one MCPServer with every tool registered against a Runtime."""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult
from pydantic import ValidationError

from server.monitoring.metrics import Metrics
from server.results import InvalidInput, to_call_result
from server.runtime import Runtime
from tools import Toolset, register_all

MAX_ARGUMENT_PROBLEMS = 5

INSTRUCTIONS = (
    "grantkeeper calls {services} on the user's behalf with grants it holds; you never see a token. "
    "Every tool returns a `status`. On `reauth_required`, show the user the magic_link and wait for them to "
    "reconnect before calling again. On `rate_limited`, wait retry_after_seconds. On `upstream_error` with "
    "outcome_unknown, check whether the change happened before repeating it."
)


class ToolServer(MCPServer):
    """An MCPServer whose argument-validation failures are results like any other (`status: invalid_input`),
    not the SDK's raw pydantic text: the agent reads which argument is wrong and what is expected."""

    canonical_names: dict[str, str]
    metrics: Metrics | None = None

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if isinstance(error, UnexpectedToolError) or not isinstance(error.__cause__, ValidationError):
                raise
            tool = self.canonical_names.get(name, name)
            if self.metrics is not None:
                self.metrics.record_tool_call(tool, "invalid_input")
            return invalid_arguments(tool, error.__cause__)


def invalid_arguments(tool: str, error: ValidationError) -> CallToolResult:
    # Argument names and expectations only, never the values: they are the caller's data.
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])[:80] or 'arguments'}: {problem['msg'][:200]}"
        for problem in error.errors(include_input=False, include_url=False)[:MAX_ARGUMENT_PROBLEMS]
    ]
    connector = tool.split(".", 1)[0] if "." in tool else None
    return to_call_result(
        InvalidInput(
            connector=connector if connector != "accounts" else None,
            reason="invalid_arguments",
            next_step=f"Fix the arguments and call again ({'; '.join(problems)}).",
        )
    )


def build_server(runtime: Runtime, **server_options) -> tuple[MCPServer, Toolset]:
    # The SDK logs every request at INFO; one line per call is noise for operators and a cost on the hot path.
    logging.getLogger("mcp").setLevel(max(logging.WARNING, logging.getLogger().level))
    services = ", ".join(connector.spec.display_name for connector in runtime.connectors.values())
    server = ToolServer("grantkeeper", version="0.1.0", instructions=INSTRUCTIONS.format(services=services), **server_options)
    toolset = Toolset(server, runtime, stdio_identity=server_options.get("token_verifier") is None)
    register_all(toolset)
    server.canonical_names = toolset.registered
    server.metrics = runtime.metrics
    return server, toolset
