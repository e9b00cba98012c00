"""ASGI middleware in front of a simulator that holds requests to one path until the test releases them, and says
when the first arrived — so a test can act while a request is provably in flight, without sleeping."""

from __future__ import annotations

import threading

import anyio


class HoldRequests:
    def __init__(self, app, path_suffix: str):
        self.app = app
        self.path_suffix = path_suffix
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith(self.path_suffix):
            self.arrived.set()
            await anyio.to_thread.run_sync(self.release.wait, 30)
        await self.app(scope, receive, send)


class HoldAnswer:
    """ASGI middleware that lets the `nth` matching request do its work, then holds its answer until released:
    the write has happened, the client has not heard — the moment to kill the client."""

    def __init__(self, app, method: str, path_suffix: str, nth: int = 1):
        self.app = app
        self.method = method
        self.path_suffix = path_suffix
        self.nth = nth
        self.seen = 0
        self.processed = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope, receive, send):
        matches = scope["type"] == "http" and scope["method"] == self.method and scope["path"].endswith(self.path_suffix)
        if matches:
            self.seen += 1
        if not matches or self.seen != self.nth:
            await self.app(scope, receive, send)
            return

        async def held_send(message):
            if message["type"] == "http.response.start":
                self.processed.set()
                await anyio.to_thread.run_sync(self.release.wait, 60)
            await send(message)

        await self.app(scope, receive, held_send)
