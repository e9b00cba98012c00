"""Slow and greedy clients against the real listener, over raw sockets: a client that never finishes its request
head (silent, or trickling a byte at a time) is disconnected by the header deadline; an oversized head is refused;
an idle kept-alive connection is closed; a request whose head arrived in time is never cut short; and an
abandoned streamable HTTP session is closed after the idle limit."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from server.auth import create_api_key
from server.web.app import build_web_app
from server.web.listener import listening
from server.web.listener_limits import ListenerLimits

pytestmark = pytest.mark.anyio
LIMITS = ListenerLimits(header_timeout_seconds=0.5, body_timeout_seconds=0.5, keep_alive_seconds=1, max_header_bytes=4096)


def app_with(release: anyio.Event | None = None) -> Starlette:
    async def slow(request):
        if release is not None:
            await release.wait()
        return PlainTextResponse("answered")

    return Starlette(routes=[Route("/", slow)])


async def connect(url: str) -> anyio.abc.SocketStream:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await anyio.connect_tcp(host, int(port))


async def closed_by_server(stream: anyio.abc.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection (bounded, so a hang fails the test)."""
    received = b""
    with anyio.fail_after(15):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return received


async def test_a_client_that_never_sends_its_request_head_is_disconnected():
    async with listening(app_with(), "127.0.0.1", 0, LIMITS) as listener:
        silent = await connect(listener.url)
        partial = await connect(listener.url)
        await partial.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert await closed_by_server(silent) == b""
        assert await closed_by_server(partial) == b""
        # The listener still serves everyone else.
        async with httpx2.AsyncClient(timeout=10) as client:
            assert (await client.get(listener.url)).text == "answered"


async def test_a_client_trickling_its_head_is_disconnected_although_bytes_keep_coming():
    async with listening(app_with(), "127.0.0.1", 0, LIMITS) as listener:
        stream = await connect(listener.url)
        await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            try:
                while True:  # the slow-loris: one header byte every 50 ms, for ever
                    await stream.send(b"X")
                    sent += 1
                    await anyio.sleep(0.05)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionResetError, OSError):
                return

        async with anyio.create_task_group() as group:
            group.start_soon(trickle)
            assert await closed_by_server(stream) == b""
            group.cancel_scope.cancel()
        assert sent > 0


async def test_a_client_trickling_its_body_is_disconnected_and_the_app_sees_it_leave():
    outcome: list[str] = []
    seen = anyio.Event()

    async def upload(request):
        try:
            await request.body()
            outcome.append("read")
        except ClientDisconnect:
            outcome.append("disconnected")
        seen.set()
        return PlainTextResponse("answered")

    app = Starlette(routes=[Route("/", upload, methods=["POST"])])
    async with listening(app, "127.0.0.1", 0, LIMITS) as listener:
        stream = await connect(listener.url)
        await stream.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)

        async def trickle() -> None:
            try:
                while True:
                    await stream.send(b"x")
                    await anyio.sleep(0.05)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionResetError, OSError):
                return

        async with anyio.create_task_group() as group:
            group.start_soon(trickle)
            assert b"answered" not in await closed_by_server(stream)
            group.cancel_scope.cancel()
        with anyio.fail_after(15):
            await seen.wait()
    assert outcome == ["disconnected"]


async def test_an_oversized_request_head_is_refused_before_its_deadline():
    limits = ListenerLimits(header_timeout_seconds=3600, max_header_bytes=4096)  # only the size can end it
    async with listening(app_with(), "127.0.0.1", 0, limits) as listener:
        stream = await connect(listener.url)
        await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 10_000)
        answer = await closed_by_server(stream)
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:100]


async def test_an_idle_kept_alive_connection_is_closed_and_a_slow_answer_is_not_cut_short():
    release = anyio.Event()
    async with listening(app_with(release), "127.0.0.1", 0, LIMITS) as listener:
        stream = await connect(listener.url)
        await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with anyio.fail_after(15):
            # The head arrived in time: the connection outlives the header deadline while the app works.
            await anyio.sleep(LIMITS.header_timeout_seconds * 3)
            release.set()
            answer = b""
            while b"answered" not in answer:
                answer += await stream.receive()
        assert answer.startswith(b"HTTP/1.1 200")
        # Then nothing more is sent: the keep-alive (and header) deadline closes it.
        assert await closed_by_server(stream) == b""


async def test_an_abandoned_mcp_session_is_closed_after_the_idle_limit(runtime):
    runtime.settings.mcp_session_idle_seconds = 0.5
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    app = build_web_app(runtime, transports=("http",))
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "abandoning", "version": "1"}},
    }
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    async with listening(app, "127.0.0.1", 0, LIMITS) as listener, httpx2.AsyncClient(timeout=10) as client:
        opened = await client.post(f"{listener.url}/mcp", json=initialize, headers=headers)
        session_id = opened.headers["mcp-session-id"]
        endpoint = next(route.endpoint for route in app.routes if getattr(route, "path", "") == "/mcp")
        manager = endpoint.app.session_manager  # behind the SDK's RequireAuthMiddleware
        assert session_id in manager._server_instances
        with anyio.fail_after(15):  # the client went away without DELETE; the server closes the session itself
            while session_id in manager._server_instances:
                await anyio.sleep(0.05)
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        gone = await client.post(
            f"{listener.url}/mcp",
            json=ping,
            headers={**headers, "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"},
        )
        assert gone.status_code == 404


async def test_beyond_the_concurrency_limit_the_listener_answers_503():
    release, inside = anyio.Event(), anyio.Event()

    async def hold(request):
        inside.set()
        await release.wait()
        return PlainTextResponse("answered")

    app = Starlette(routes=[Route("/", hold)])
    limits = ListenerLimits(max_concurrency=2)  # uvicorn: 503 once open connections (or tasks) reach the limit
    async with listening(app, "127.0.0.1", 0, limits) as listener, httpx2.AsyncClient(timeout=10) as client:
        answers: list[httpx2.Response] = []

        async def first() -> None:
            answers.append(await client.get(listener.url))

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            with anyio.fail_after(10):
                await inside.wait()
            turned_away = await client.get(listener.url)
            release.set()
    assert turned_away.status_code == 503
    assert [answer.text for answer in answers] == ["answered"]
