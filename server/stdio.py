"""The stdio transport, answering the lines the SDK's reader would drop: a line that is not JSON gets a JSON-RPC
parse error (-32700), JSON that is not a JSON-RPC message an invalid-request error (-32600), both with `id: null`
as JSON-RPC 2.0 requires, so a client never waits forever on a request it garbled. Blank lines are ignored.

    await run_stdio(server)   # instead of server.run_stdio_async()
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError

from server.monitoring.logging import get_logger

log = get_logger("grantkeeper.stdio")


def error_reply(problem: Exception) -> JSONRPCError | None:
    """The JSON-RPC error for a line the reader could not turn into a message; None for a blank line. The line
    itself is never echoed or logged (it may carry anything, secrets included)."""
    errors = problem.errors() if isinstance(problem, ValidationError) else []
    if errors and all(str(error.get("input", "")).strip() == "" for error in errors):
        return None
    parse_failed = not errors or any(error.get("type") == "json_invalid" for error in errors)
    code, message = (PARSE_ERROR, "Parse error") if parse_failed else (INVALID_REQUEST, "Invalid Request")
    log.warning("stdio_message_refused", code=code, length=_length(errors))
    return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=code, message=message))


def _length(errors: list[Any]) -> int:
    value = errors[0].get("input", "") if errors else ""
    return len(value) if isinstance(value, (str, bytes)) else 0


async def run_stdio(server: MCPServer, *, first_reply_sent: anyio.Event | None = None) -> None:
    """Serve `server` over this process's stdin/stdout until stdin closes. `first_reply_sent` is set once the first
    answer (normally to `initialize`) has been handed to stdout: work that would slow that answer waits for it."""
    lowlevel = server._lowlevel_server  # what run_stdio_async drives too; the SDK has no public seam here
    async with stdio_server() as (lines, replies):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        answers, answer_queue = anyio.create_memory_object_stream[SessionMessage](0)

        reading = anyio.CancelScope()

        async def answer_unreadable_lines() -> None:
            with reading:
                async with send:
                    async for item in lines:
                        if not isinstance(item, Exception):
                            await send.send(item)
                        elif (reply := error_reply(item)) is not None:
                            try:
                                await replies.send(SessionMessage(reply))
                            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                                return

        async def relay_answers() -> None:
            async with answer_queue, replies:  # closing stdout's stream ends the transport, as the SDK's run would
                async for answer in answer_queue:
                    await replies.send(answer)
                    if first_reply_sent is not None:
                        first_reply_sent.set()

        async with anyio.create_task_group() as group:
            group.start_soon(answer_unreadable_lines)
            group.start_soon(relay_answers)
            async with answers:
                await lowlevel.run(receive, answers, lowlevel.create_initialization_options())
            # The relay ends once it has written every answer; only the reader may still be waiting on stdin.
            reading.cancel()
