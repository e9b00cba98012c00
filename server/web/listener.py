"""The embedded listener: uvicorn serving an ASGI app inside our event loop for as long as an `async with` block
lasts, bound before it starts (a busy port is an OSError at once, port 0 a real port before any link is made),
without access logs (request lines carry magic-link tokens and OAuth codes), and leaving the signals to the host.

    async with listening(app, "127.0.0.1", 8765, limits) as listener:
        adopt_public_url(settings, listener.url)
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import anyio
import uvicorn
from starlette.types import ASGIApp

from server.monitoring.logging import get_logger
from server.settings import Settings
from server.web.listener_limits import ListenerLimits

log = get_logger("grantkeeper.web")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that says when it is up and leaves the signals alone."""

    def __init__(self, config: uvicorn.Config, ready: anyio.Event):
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The host process owns the signals (`serve` stops the listener on SIGTERM and then cleans up); uvicorn
        # would otherwise re-raise them after shutting down and skip that clean-up.
        yield


@dataclass
class Listener:
    """A running listener: `url` is where it answers (a reachable address, also for 0.0.0.0 and port 0)."""

    url: str
    _server: _EmbeddedServer
    _stopped: anyio.Event

    async def wait_closed(self) -> None:
        """Until the server stops of its own accord (it normally runs until the `listening` block ends)."""
        await self._stopped.wait()


def bind(host: str, port: int) -> socket.socket:
    """Bind now, so a busy port is an OSError here and port 0 becomes a real port before any link is issued."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


@contextlib.asynccontextmanager
async def listening(
    app: ASGIApp, host: str, port: int, limits: ListenerLimits | None = None, *, sock: socket.socket | None = None
) -> AsyncIterator[Listener]:
    """Serve `app` with uvicorn in this event loop until the block ends (on `sock` if already bound). Access logs
    stay off: request lines carry magic-link tokens and OAuth codes. `limits`: against slow and greedy clients
    (`listener_limits.py`)."""
    sock = sock or bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=bound_host,
        port=bound_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
        **(limits or ListenerLimits()).uvicorn_options(),
    )
    ready, stopped = anyio.Event(), anyio.Event()
    server = _EmbeddedServer(config, ready)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn's way of saying the app failed to start
            log.error("web_listener_failed", host=bound_host, port=bound_port)
        finally:
            ready.set()
            stopped.set()
            sock.close()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await ready.wait()
        if not server.started:
            raise RuntimeError(f"the web listener on {bound_host}:{bound_port} did not start")
        url_host = _reachable_host(bound_host)
        try:
            yield Listener(f"http://{url_host}:{bound_port}", server, stopped)
        finally:
            server.should_exit = True


def listener_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{_reachable_host(host)}:{port}"


def _reachable_host(host: str) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def adopt_public_url(settings: Settings, listener_url: str) -> None:
    """Links point at the listener unless GRANTKEEPER_PUBLIC_URL says otherwise."""
    if "public_url" not in settings.model_fields_set:
        settings.public_url = listener_url
