"""Connecting the agent to grantkeeper with the `mcp` SDK's client: over stdio to a `grantkeeper serve` child
process (a desktop agent), or over streamable HTTP with an API key (an agent beside a shared server)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

HTTP_TIMEOUT = httpx2.Timeout(30, read=120)


@asynccontextmanager
async def stdio_session(
    env: dict[str, str] | None = None, cwd: str | None = None, errlog: TextIO = sys.stderr
) -> AsyncIterator[ClientSession]:
    """Start `grantkeeper serve` (this Python's copy) as a child and talk MCP over its stdin/stdout. Its settings
    (GRANTKEEPER_*) come from `env`; the grants stay in that process and its vault."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=cwd)
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def http_session(url: str, api_key: str, **session_options: Any) -> AsyncIterator[ClientSession]:
    """Streamable HTTP to a running `grantkeeper serve --transport http`; `url` ends in /mcp. The API key names
    the caller (org and user); grantkeeper picks that user's accounts."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT) as client:
        async with streamable_http_client(url, http_client=client) as (read, write, *_):
            async with ClientSession(read, write, **session_options) as session:
                await session.initialize()
                yield session
