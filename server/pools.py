"""One HTTP connection pool per connector: a provider that hangs holds only its own connections, so calls to every
other provider never wait behind it. Each pool counts the requests that had to wait for a connection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx2

from server.settings import Settings

USER_AGENT = "grantkeeper/0.1"


@dataclass(frozen=True)
class PoolStats:
    max_connections: int
    in_flight: int
    waits: int  # requests that found every connection busy and queued for one


class ConnectorPool:
    """An `httpx2.AsyncClient` of its own, and a gate of the same size in front of it that counts the queueing."""

    def __init__(self, settings: Settings):
        self.max_connections = settings.api_max_connections
        self.client = httpx2.AsyncClient(
            timeout=settings.api_timeout_seconds,
            limits=httpx2.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        self._gate = asyncio.Semaphore(self.max_connections)  # acquiring a free one costs no trip round the loop
        self._waits = 0
        self._in_flight = 0

    def connection(self) -> _Held:
        """`async with pool.connection() as client`: one of the pool's connections for one exchange (request
        sent, answer read)."""
        return _Held(self)

    def _release(self) -> None:
        self._in_flight -= 1
        self._gate.release()

    def stats(self) -> PoolStats:
        return PoolStats(self.max_connections, self._in_flight, self._waits)


class _Held:
    """A held connection of a pool. A plain class, not a generator: every provider request enters one, and a
    generator-based context manager costs several times the gate itself."""

    __slots__ = ("_pool",)

    def __init__(self, pool: ConnectorPool):
        self._pool = pool

    async def __aenter__(self) -> httpx2.AsyncClient:
        pool = self._pool
        if pool._gate.locked():
            pool._waits += 1
        await pool._gate.acquire()
        pool._in_flight += 1
        return pool.client

    async def __aexit__(self, *exc_info: object) -> None:
        self._pool._release()


class ConnectorPools:
    """The pools of one process, made on first use (declared providers included)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pools: dict[str, ConnectorPool] = {}

    def __getitem__(self, connector: str) -> ConnectorPool:
        pool = self._pools.get(connector)
        if pool is None:
            pool = self._pools[connector] = ConnectorPool(self.settings)
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.client.aclose()
