"""A small read-through cache that never makes a hit wait on the database: an entry older than its TTL is
served as is while one background re-read replaces it (stale-while-revalidate)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RevalidatingCache(Generic[K, V]):
    def __init__(
        self,
        ttl: float,
        load: Callable[[K], Awaitable[V | None]],
        *,
        accept: Callable[[V, V], bool] = lambda old, new: True,
        cacheable: Callable[[V], bool] = lambda value: True,
    ):
        """`accept(old, new)`: may a re-read value replace the cached one. `cacheable(value)`: values that fail
        it are returned but never kept, so the next get reads again."""
        self.ttl = ttl
        self._load = load
        self._accept = accept
        self._cacheable = cacheable
        self._entries: dict[K, tuple[V, float]] = {}
        self._revalidating: dict[K, asyncio.Task[None]] = {}

    async def get(self, key: K) -> V | None:
        cached = self.cached(key)
        if cached is not None:
            return cached
        value = await self._load(key)
        if value is not None and self._cacheable(value):
            self.put(key, value)
        return value

    def cached(self, key: K) -> V | None:
        """A hit as `get` serves it (a stale one starting its re-read), without a coroutine: callers on every tool
        call's path try this first and await `get` only on a miss."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, stored_at = entry
        if time.monotonic() - stored_at >= self.ttl and key not in self._revalidating:
            task = asyncio.ensure_future(self._revalidate(key))
            self._revalidating[key] = task
            task.add_done_callback(lambda _: self._revalidating.pop(key, None))
        return value

    async def _revalidate(self, key: K) -> None:
        try:
            fresh = await self._load(key)
        except Exception:
            self._entries.pop(key, None)
            return
        current = self._entries.get(key)
        if fresh is None or not self._cacheable(fresh):
            self._entries.pop(key, None)
        elif current is not None and not self._accept(current[0], fresh):
            self._entries[key] = (current[0], time.monotonic())
        else:
            self.put(key, fresh)

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (value, time.monotonic())

    def peek(self, key: K) -> V | None:
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    async def aclose(self) -> None:
        tasks = list(self._revalidating.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
