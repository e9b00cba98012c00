"""An in-memory MCP client connected to a grantkeeper server built on a runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client

from server.app import build_server
from server.runtime import Runtime


@asynccontextmanager
async def mcp_client(runtime: Runtime) -> AsyncIterator[Client]:
    server, _ = build_server(runtime)
    async with Client(server, raise_exceptions=True) as client:
        yield client


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool and return its structured content (every grantkeeper result has one)."""
    result = await client.call_tool(tool, arguments or {})
    assert result.structured_content is not None, result.content
    assert result.is_error == (result.structured_content["status"] != "ok")
    return result.structured_content
