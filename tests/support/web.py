"""The web side in tests: the real app on a loopback port in the test's event loop, MCP clients over streamable
HTTP and SSE with an API key, a person clicking through a magic link (an httpx2 client that keeps cookies), and a
snapshot of every vault row to prove that a refused attempt changed nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import MetaData, inspect, select

from server.runtime import Runtime
from server.web.app import build_web_app
from server.web.listener import adopt_public_url, listening


@asynccontextmanager
async def web_server(runtime: Runtime, transports: tuple[str, ...] = ("http", "sse")) -> AsyncIterator[str]:
    """Serve grantkeeper's web app for `runtime` on a free loopback port; links point at it."""
    app = build_web_app(runtime, transports=transports)
    async with listening(app, "127.0.0.1", 0) as listener:
        adopt_public_url(runtime.settings, listener.url)
        yield listener.url


@asynccontextmanager
async def http_session(base_url: str, key: str | None, **session_options: Any) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over streamable HTTP at /mcp, authenticated with `key`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as client:
        async with streamable_http_client(f"{base_url}/mcp", http_client=client) as (read, write, *_):
            async with ClientSession(read, write, **session_options) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def sse_session(base_url: str, key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with sse_client(f"{base_url}/sse", headers=headers) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call_structured(session: ClientSession, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments or {})
    assert result.structured_content is not None, result.content
    assert result.is_error == (result.structured_content["status"] != "ok")
    return result.structured_content


def outcome_of(page: httpx2.Response) -> str:
    """The `data-outcome` grantkeeper's pages carry: reconnected, link_used, identity_mismatch, …"""
    marker = 'data-outcome="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def vault_rows(runtime: Runtime) -> dict[str, list[dict[str, Any]]]:
    """Every row of every vault table, for before/after comparisons. Tool calls' audit rows queued so far are
    written first, so a row of an earlier call cannot land between two snapshots."""
    runtime.audit.flush_sync()
    engine = runtime.vault.engine
    tables = {}
    metadata = MetaData()
    metadata.reflect(engine, only=[t for t in inspect(engine).get_table_names() if t != "alembic_version"])
    with engine.connect() as connection:
        for name, table in sorted(metadata.tables.items()):
            tables[name] = [dict(row._mapping) for row in connection.execute(select(table))]
    return tables
