"""Builds the MCP server: one MCPServer with every tool registered against a Runtime."""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.mcpserver import MCPServer

from server.runtime import Runtime
from tools.registry import register_all
from tools.toolset import ToolServer, Toolset

INSTRUCTIONS = (
    "grantkeeper calls {services} on the user's behalf with grants it holds; you never see a token. "
    "Every tool returns a `status`. On `reauth_required`, show the user the magic_link and wait for them to "
    "reconnect before calling again. On `rate_limited`, wait retry_after_seconds. On `upstream_error` with "
    "outcome_unknown, check whether the change happened before repeating it."
)


def build_server(runtime: Runtime, **server_options: Any) -> tuple[MCPServer, Toolset]:
    # The SDK logs every request at INFO; one line per call is noise for operators and a cost on the hot path.
    logging.getLogger("mcp").setLevel(max(logging.WARNING, logging.getLogger().level))
    services = ", ".join(connector.spec.display_name for connector in runtime.connectors.values())
    server = ToolServer("grantkeeper", version="0.1.0", instructions=INSTRUCTIONS.format(services=services), **server_options)
    toolset = Toolset(server, runtime, stdio_identity=server_options.get("token_verifier") is None)
    register_all(toolset)
    return server, toolset
