"""Request-level fault injection and hit counters shared by the provider simulators, including hostile answers:
one that never comes, one that trickles forever, a gzip bomb, an endless body and a garbled 200."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, get_args

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class Counters:
    """Thread-safe counters; read them as attributes (``counters.refreshes_ok``) or via snapshot()."""

    NAMES = (
        "token_requests",
        "refreshes_ok",
        "refresh_failures",
        "code_exchanges_ok",
        "code_exchange_failures",
        "reuse_detections",
        "api_requests",
        "rate_limited",
        "server_errors",
        "slow_answers",  # token answers started trickling (token_endpoint_drip)
        "connection_resets",
        "hostile_answers",  # hang, trickle, gzip bomb, endless body or garbled answer started
        "answers_abandoned",  # the client went away before a hanging, trickling or endless answer was over
        "revocations",  # grants ended by a revocation request from the client (offboarding)
        # API requests carrying a Cookie header: every API answer sets one (as providers behind a CDN or a session
        # layer do), and a client that sends it back on a later request may carry one account's session on another's
        "cookies_presented",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._values: Counter[str] = Counter()
        self._endpoints: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> None:
        if name not in self.NAMES:
            raise KeyError(f"unknown counter {name!r}")
        with self._lock:
            self._values[name] += amount
            self._changed.notify_all()

    def wait_for(self, name: str, at_least: int, timeout: float = 10.0) -> bool:
        """Block until counter `name` reaches `at_least` (a test's synchronisation point); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._values[name] >= at_least, timeout)

    def hit(self, endpoint: str) -> None:
        with self._lock:
            self._endpoints[endpoint] += 1

    def __getattr__(self, name: str) -> int:
        if name in Counters.NAMES:
            with self._lock:
                return self._values[name]
        raise AttributeError(name)

    def endpoint(self, name: str) -> int:
        with self._lock:
            return self._endpoints[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            stats: dict[str, Any] = {name: self._values[name] for name in self.NAMES}
            stats["endpoints"] = dict(self._endpoints)
            return stats

    def reset(self) -> None:
        with self._lock:
            self._values.clear()
            self._endpoints.clear()


@dataclass(frozen=True)
class RateLimitFault:
    retry_after: int | None
    status: int | None  # None: the provider's usual status


@dataclass(frozen=True)
class ApiFailure:
    status: int
    after_processing: bool  # the change lands, only the answer is lost
    endpoint: str | None  # None: whichever API request comes next


@dataclass(frozen=True)
class TokenEndpointFault:
    status: int
    after_processing: bool  # the grant change happens, only the response is lost


@dataclass(frozen=True)
class TokenAnswerFault:
    """A token answer changed on its way out: fields set or dropped from the JSON, or the whole body replaced."""

    set_fields: dict[str, Any]
    drop_fields: tuple[str, ...]
    body: str | None
    after_processing: bool  # False: the request is not processed at all (only with `body`)


@dataclass(frozen=True)
class Chaos:
    """Faults at random, each request rolling against these chances (a seeded generator: a run can be replayed).
    Token-endpoint faults here never lose a rotation: errors and hangs answer before the request is processed,
    slow answers are processed and then trickled over `slow_seconds`."""

    seed: int = 0
    token_errors: float = 0.0  # 503 before processing
    token_hangs: float = 0.0  # nothing for `hang_seconds`, then 504, never processed (a gateway timing out)
    token_slow: float = 0.0  # processed, then the answer trickled over `slow_seconds`
    api_rate_limits: float = 0.0  # 429 with Retry-After: 1
    api_resets: float = 0.0  # the connection drops mid-answer
    api_slow: float = 0.0  # the answer comes after `api_latency_seconds`
    hang_seconds: float = 5.0
    slow_seconds: float = 1.0
    api_latency_seconds: float = 0.3


AnswerKind = Literal["hang", "trickle", "gzip_bomb", "huge", "garbled"]


@dataclass(frozen=True)
class AnswerFault:
    """How an API answer misbehaves. `size`: inflated bytes of a gzip bomb, or bytes of an endless body."""

    kind: AnswerKind
    size: int = 0
    interval: float = 0.05  # trickle: seconds between two bytes


class Faults:
    """Pending faults; each ``take_*`` consumes one occurrence so "the next N requests" is exact. With `chaos`
    set, a request that finds no pending fault of a kind rolls for one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.api_latency = 0.0
            self.token_endpoint_latency_seconds = 0.0
            self._rate_limits: list[RateLimitFault] = []
            self._failures: list[ApiFailure] = []
            self._token_failures: list[TokenEndpointFault] = []
            self._token_answers: list[TokenAnswerFault] = []
            self._token_drips: list[float] = []
            self._resets = 0
            self._chaos: Chaos | None = None
            self._random = random.Random(0)
            self._answers: list[AnswerFault] = []
            self._outage_ends = 0.0
            self._flaky_rate = 0.0
            self._flaky_ends = 0.0
            self._flaky_random = random.Random(0)

    def chaos(self, chaos: Chaos | None) -> None:
        with self._lock:
            self._chaos = chaos
            self._random = random.Random(chaos.seed if chaos else 0)

    def _roll(self, kind: str) -> Chaos | None:
        """The chaos settings if this request gets fault `kind` (caller holds the lock)."""
        chance = getattr(self._chaos, kind, 0.0) if self._chaos else 0.0
        return self._chaos if chance and self._random.random() < chance else None

    def take_chaos(self, kind: str) -> Chaos | None:
        with self._lock:
            return self._roll(kind)

    def rate_limit(self, count: int = 1, retry_after: int | None = 1, status: int | None = None) -> None:
        with self._lock:
            self._rate_limits = [RateLimitFault(retry_after, status)] * count

    def fail(self, count: int = 1, status: int = 503, after_processing: bool = False, endpoint: str | None = None) -> None:
        """Answer the next `count` API requests (to `endpoint` only, when given) with `status`; `after_processing`:
        do the work, lose the answer."""
        with self._lock:
            self._failures = [ApiFailure(status, after_processing, endpoint)] * count

    def outage(self, seconds: float) -> None:
        """Every API and token request fails with 503 for the next `seconds` (0 ends an outage)."""
        with self._lock:
            self._outage_ends = time.monotonic() + max(0.0, seconds)

    def in_outage(self) -> bool:
        with self._lock:
            return time.monotonic() < self._outage_ends

    def token_endpoint_flaky(self, rate: float, seconds: float, seed: int = 0) -> None:
        """For the next `seconds`, each token request fails (503, nothing processed) with probability `rate`."""
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self._flaky_rate = rate
            self._flaky_ends = time.monotonic() + max(0.0, seconds)
            self._flaky_random = random.Random(seed)

    def latency(self, seconds: float) -> None:
        with self._lock:
            self.api_latency = max(0.0, seconds)

    def token_endpoint_fail(self, count: int = 1, status: int = 503, after_processing: bool = False) -> None:
        with self._lock:
            self._token_failures = [TokenEndpointFault(status, after_processing)] * count

    def token_endpoint_latency(self, seconds: float) -> None:
        with self._lock:
            self.token_endpoint_latency_seconds = max(0.0, seconds)

    def token_endpoint_answer(
        self,
        count: int = 1,
        set_fields: dict[str, Any] | None = None,
        drop_fields: tuple[str, ...] = (),
        body: str | None = None,
        after_processing: bool = True,
    ) -> None:
        with self._lock:
            self._token_answers = [TokenAnswerFault(dict(set_fields or {}), tuple(drop_fields), body, after_processing)] * count

    def token_endpoint_drip(self, count: int = 1, seconds: float = 5.0) -> None:
        """The next `count` token answers are processed, then trickled one byte at a time over `seconds`: each
        read gets a byte long before any per-read timeout, only a total deadline ends it."""
        with self._lock:
            self._token_drips = [max(0.0, seconds)] * count

    def reset_connections(self, count: int = 1) -> None:
        """The next `count` API requests get the start of an answer, then the connection drops."""
        with self._lock:
            self._resets = count

    def take_token_answer(self) -> TokenAnswerFault | None:
        with self._lock:
            return self._token_answers.pop() if self._token_answers else None

    def take_token_drip(self) -> float | None:
        with self._lock:
            if self._token_drips:
                return self._token_drips.pop()
            chaos = self._roll("token_slow")
            return chaos.slow_seconds if chaos else None

    def take_reset(self) -> bool:
        with self._lock:
            if self._resets <= 0:
                return self._roll("api_resets") is not None
            self._resets -= 1
            return True

    def take_api_latency(self) -> float:
        with self._lock:
            chaos = self._roll("api_slow")
            return max(self.api_latency, chaos.api_latency_seconds if chaos else 0.0)

    def answer(self, kind: AnswerKind, count: int = 1, *, size: int = 0, interval: float = 0.05) -> None:
        """Answer `count` more API requests with a hostile answer of `kind` (`HostileResponse`), queued after any
        hostile answers still pending, so different kinds can follow one another."""
        if kind not in get_args(AnswerKind):
            raise ValueError(f"unknown answer kind {kind!r}")
        with self._lock:
            self._answers.extend([AnswerFault(kind, max(0, size), max(0.001, interval))] * count)

    def take_answer(self) -> AnswerFault | None:
        with self._lock:
            return self._answers.pop(0) if self._answers else None

    def take_rate_limit(self) -> RateLimitFault | None:
        with self._lock:
            if self._rate_limits:
                return self._rate_limits.pop()
            return RateLimitFault(retry_after=1, status=None) if self._roll("api_rate_limits") else None

    def take_failure(self, endpoint: str) -> ApiFailure | None:
        with self._lock:
            for index, failure in enumerate(self._failures):
                if failure.endpoint is None or failure.endpoint == endpoint:
                    return self._failures.pop(index)
            return None

    def take_token_endpoint_failure(self) -> TokenEndpointFault | None:
        with self._lock:
            if self._token_failures:
                return self._token_failures.pop()
            if time.monotonic() < self._outage_ends:
                return TokenEndpointFault(503, after_processing=False)
            if time.monotonic() < self._flaky_ends and self._flaky_random.random() < self._flaky_rate:
                return TokenEndpointFault(503, after_processing=False)
            return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency": self.api_latency,
                "token_endpoint_latency": self.token_endpoint_latency_seconds,
                "rate_limits_pending": len(self._rate_limits),
                "failures_pending": len(self._failures),
                "outage": time.monotonic() < self._outage_ends,
                "token_endpoint_flaky_rate": self._flaky_rate if time.monotonic() < self._flaky_ends else 0.0,
                "token_endpoint_failures_pending": len(self._token_failures),
                "token_answers_pending": len(self._token_answers),
                "token_drips_pending": len(self._token_drips),
                "resets_pending": self._resets,
                "chaos": self._chaos.__dict__ if self._chaos else None,
                "hostile_answers_pending": len(self._answers),
            }


# ---- hostile answers ------------------------------------------------------------------------------------
CHUNK = 64 * 1024
GARBLED_BODY = b'{"ok": true, "items": [{"id": 1, "na'  # a 200 whose JSON stops mid-way


@lru_cache(maxsize=4)
def gzip_bomb(inflated_size: int) -> bytes:
    """A small gzip body that inflates to `inflated_size` bytes of one JSON string (made once, in 1 MiB steps)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    head, tail = b'{"padding": "', b'"}'
    parts = [compressor.compress(head)]
    remaining = max(0, inflated_size - len(head) - len(tail))
    block = b"A" * (1024 * 1024)
    while remaining > 0:
        parts.append(compressor.compress(block[:remaining]))
        remaining -= len(block)
    parts.append(compressor.compress(tail))
    parts.append(compressor.flush())
    return b"".join(parts)


class HostileResponse(Response):
    """An ASGI answer that misbehaves as `fault` says, and counts a client that gives up on it."""

    def __init__(self, fault: AnswerFault, counters: Counters):
        super().__init__(status_code=200)
        self.fault = fault
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.counters.incr("hostile_answers")
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        # The answer runs beside the watch: a send blocked on a full socket buffer never returns once the client
        # is gone, so the client leaving cancels the answer rather than waiting for it.
        answer = asyncio.ensure_future(getattr(self, f"_{self.fault.kind}")(send, gone))
        try:
            await asyncio.wait({answer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if answer.done() and not answer.cancelled() and answer.exception() is None and answer.result():
            return
        answer.cancel()
        self.counters.incr("answers_abandoned")

    @staticmethod
    async def _start(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), *headers]})

    async def _hang(self, send: Send, gone: asyncio.Event) -> bool:
        await gone.wait()  # nothing is ever sent: not even the status line
        return False

    async def _trickle(self, send: Send, gone: asyncio.Event) -> bool:
        await self._start(send, [])
        while not gone.is_set():  # one byte at a time, never the end: each read succeeds, the body never ends
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            try:
                await asyncio.wait_for(gone.wait(), self.fault.interval)
            except TimeoutError:
                pass
        return False

    async def _gzip_bomb(self, send: Send, gone: asyncio.Event) -> bool:
        body = gzip_bomb(self.fault.size)
        await self._start(send, [(b"content-encoding", b"gzip"), (b"content-length", str(len(body)).encode())])
        await send({"type": "http.response.body", "body": body})
        return True

    async def _huge(self, send: Send, gone: asyncio.Event) -> bool:
        # Streamed in chunks made on the fly (chunked encoding, no Content-Length): never held in memory.
        await self._start(send, [])
        await send({"type": "http.response.body", "body": b'{"padding": "', "more_body": True})
        block, sent = b"A" * CHUNK, 0
        while sent < self.fault.size:
            if gone.is_set():
                return False
            await send({"type": "http.response.body", "body": block, "more_body": True})
            sent += len(block)
            # A write into a connection the client has dropped returns at once; yielding lets the loop notice.
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b'"}'})
        return True

    async def _garbled(self, send: Send, gone: asyncio.Event) -> bool:
        await self._start(send, [(b"content-length", str(len(GARBLED_BODY)).encode())])
        await send({"type": "http.response.body", "body": GARBLED_BODY})
        return True
