"""Builds the MCP server: one MCPServer with every tool registered against a Runtime.

    server, toolset = build_server(runtime)          # ready at once (HTTP, tests)

Over stdio the server answers `initialize` before the runtime exists (server/stdio_startup.py): `tool_server()`
is the empty server, `install_tools` registers the tools once the runtime is open, and until then `tools/list`
and `tools/call` wait at its `StartupGate`. This module therefore imports only what the empty server needs; the
tools and the result models come with `install_tools`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, InputRequiredResult, Tool

if TYPE_CHECKING:
    from server.runtime import Runtime
    from tools.toolset import Toolset

INSTRUCTIONS = (
    "grantkeeper calls SaaS APIs (each tool is named after its service) on the user's behalf with grants it holds; "
    "you never see a token. Every tool returns a `status`. On `reauth_required`, show the user the magic_link and "
    "wait for them to reconnect before calling again. On `rate_limited`, wait retry_after_seconds. On "
    "`upstream_error` with outcome_unknown, check whether the change happened before repeating it."
)


class StartupFailed(RuntimeError):
    """The runtime behind the tools did not open; the process is ending and says why on stderr."""


class StartupGate:
    """Open once the tools are installed (or failed for good). Requests that need the tools wait here, so a call
    arriving while the vault still opens is answered once it is open, never refused."""

    def __init__(self) -> None:
        self._settled = anyio.Event()
        self.failure: BaseException | None = None

    def open(self) -> None:
        self._settled.set()

    def fail(self, failure: BaseException) -> None:
        self.failure = failure
        self._settled.set()

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    async def wait_settled(self) -> None:
        """Until open or failed, without raising."""
        await self._settled.wait()

    async def wait(self) -> None:
        """Until open; raises StartupFailed if start-up failed."""
        await self._settled.wait()
        if self.failure is not None:
            raise StartupFailed("grantkeeper failed to start; its log (stderr) says why") from None


class ToolServer(MCPServer):
    """An MCPServer whose tool calls all go through `Toolset.call` (tools/toolset.py): argument-validation failures
    become results like any other (`status: invalid_input`), and every call is counted once. Its tools wait for
    `gate`, when there is one."""

    toolset: Toolset
    gate: StartupGate | None = None

    async def list_tools(self) -> list[Tool]:
        if self.gate is not None:
            await self.gate.wait()
        return await super().list_tools()

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if self.gate is not None:
            await self.gate.wait()
        result: CallToolResult | InputRequiredResult = await self.toolset.call(
            name, lambda: MCPServer.call_tool(self, name, arguments, context)
        )
        return result


def tool_server(**server_options: Any) -> ToolServer:
    """The server without its tools: enough to answer `initialize`."""
    # The SDK logs every request at INFO; one line per call is noise for operators and a cost on the hot path.
    logging.getLogger("mcp").setLevel(max(logging.WARNING, logging.getLogger().level))
    return ToolServer("grantkeeper", version="0.1.0", instructions=INSTRUCTIONS, **server_options)


def install_tools(server: ToolServer, runtime: Runtime, *, stdio_identity: bool) -> Toolset:
    """Register every tool of `runtime`'s connectors on `server`. `stdio_identity`: callers without a key act as
    the configured user (stdio); over HTTP a caller is whoever its key names."""
    from tools.registry import register_all
    from tools.toolset import Toolset

    toolset = Toolset(server, runtime, stdio_identity=stdio_identity)
    server.toolset = toolset
    register_all(toolset)
    return toolset


def build_server(runtime: Runtime, **server_options: Any) -> tuple[ToolServer, Toolset]:
    server = tool_server(**server_options)
    return server, install_tools(server, runtime, stdio_identity=server_options.get("token_verifier") is None)
