"""One HTTP connection pool per connector: a provider that hangs holds only its own connections, so calls to every
other provider never wait behind it. Each pool counts the requests that had to wait for a connection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx2

from server.settings import Settings

USER_AGENT = "grantkeeper/0.1"


def cookieless_jar() -> CookieJar:
    """A cookie jar that keeps nothing. One client serves every account of a connector: a cookie one account's
    answer set (a CDN's, a session layer's) must never ride on another account's request, where a provider that
    honours it could answer with the first account's data whatever the bearer token says."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


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
            cookies=cookieless_jar(),
        )
        # What every request of the pool carries, taken from the client once: requests are made as `httpx2.Request`s
        # (server/execute.py), not by the client's `build_request`, which merges its cookies too (~15 µs a call).
        self.headers = dict(self.client.headers)  # its defaults and our User-Agent, names in lower case
        self.timeout = self.client.timeout.as_dict()
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
