"""Serve a simulator (or any ASGI app) with uvicorn on a free loopback port in a background thread."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

import uvicorn

ASGIApp = Any


class _NotifyingServer(uvicorn.Server):
    """Signals the moment uvicorn is accepting connections, so callers wait on an event, not a sleep."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class SimulatorServer:
    """Context manager: ``with SimulatorServer(SlackSimulator()) as server: server.url``.

    ``server.app`` may be swapped while running, so one server can serve a fresh simulator per test.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.url = ""
        self._server: _NotifyingServer | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def start(self) -> SimulatorServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        config = uvicorn.Config(
            self._dispatch,
            host=self.host,
            port=self.port,
            log_level=self.log_level,
            log_config=None,  # leave the host application's logging alone
            interface="asgi3",
            access_log=False,  # request lines can carry tokens (GitHub accepts them in the query)
        )
        self._server = _NotifyingServer(config)
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"simulator-server-{self.port}", daemon=True)
        self._thread.start()
        if not self._server.ready.wait(self.startup_timeout):
            self.stop()
            raise RuntimeError(f"simulator server did not start within {self.startup_timeout} s")
        if not self._server.started:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"simulator server failed to start on {self.host}:{self.port}") from self._error
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.port = port
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        return self

    def _run(self) -> None:
        assert self._server is not None
        try:
            self._server.run()
        except BaseException as exc:  # uvicorn reports a failed bind with SystemExit
            self._error = exc
        finally:
            self._server.ready.set()  # never leave start() waiting on a dead thread

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._server = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> SimulatorServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)
