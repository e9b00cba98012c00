"""A real `grantkeeper serve` over stdio, fed lines that are not JSON-RPC messages: each gets exactly one JSON-RPC
error (-32700 for what is not JSON, -32600 for JSON that is not a message), blank lines none, the session keeps
working, and what a bad line said never reaches the log."""

from __future__ import annotations

import json
import os
import sys

import anyio
import pytest

from tests.web.test_stdio_and_cli_links import ROOT

pytestmark = pytest.mark.anyio
SECRET = "gk_line_secret_5f3b9a"
NOT_JSON = [
    "{not json",
    "]",
    '"unterminated',
    "\x00\x01 binary",
    "{" + "a" * 200_000,
    f'{{"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {{"x": "{SECRET}"}}',
]
NOT_A_MESSAGE = [
    '{"jsonrpc": "2.0", "id": 5}',
    '{"jsonrpc": "1.0", "id": 6, "method": "ping"}',
    "42",
    "null",
    "[]",
    '{"jsonrpc": "2.0", "method": 123, "id": 7}',
    f'{{"secret": "{SECRET}"}}',
]
BLANK = ["", "   "]


def rpc(method: str, id_: int | None = None, **params) -> str:
    message = {"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})}
    return json.dumps(message if id_ is None else {**message, "id": id_})


async def test_each_unreadable_line_gets_one_json_rpc_error_and_the_session_goes_on(env, tmp_path):
    environment = {**os.environ, **env, "GRANTKEEPER_LISTEN_PORT": "0", "GRANTKEEPER_LOG_LEVEL": "debug"}
    errlog = (tmp_path / "stderr.log").open("w")
    process = await anyio.open_process([sys.executable, "-m", "server", "serve"], cwd=str(ROOT), env=environment, stderr=errlog)
    replies: list[dict] = []
    buffer = b""

    async def until_reply(id_: int) -> None:
        nonlocal buffer
        with anyio.fail_after(60):
            while not any(reply.get("id") == id_ for reply in replies):
                chunk = await process.stdout.receive()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                replies.extend(json.loads(line) for line in lines if line.strip())

    try:

        async def send(line: str) -> None:
            await process.stdin.send(line.encode() + b"\n")

        await send(
            rpc("initialize", 1, protocolVersion="2025-06-18", capabilities={}, clientInfo={"name": "test", "version": "1"})
        )
        await until_reply(1)
        await send(rpc("notifications/initialized"))
        for line in [*NOT_JSON, *BLANK, *NOT_A_MESSAGE]:
            await send(line)
        await send(rpc("ping", 2))
        await until_reply(2)
    finally:
        await process.aclose()
        errlog.close()

    errors = [reply for reply in replies if "error" in reply]
    assert [reply["error"]["code"] for reply in errors] == [-32700] * len(NOT_JSON) + [-32600] * len(NOT_A_MESSAGE)
    assert all(reply["id"] is None and reply["jsonrpc"] == "2.0" for reply in errors)
    assert [reply for reply in replies if reply.get("id") == 2] == [{"jsonrpc": "2.0", "id": 2, "result": {}}]
    assert len(replies) == 2 + len(NOT_JSON) + len(NOT_A_MESSAGE)  # initialize, ping, one per bad line
    log = (tmp_path / "stderr.log").read_text()
    assert "stdio_message_refused" in log and SECRET not in log
