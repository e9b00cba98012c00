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
