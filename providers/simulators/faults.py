"""Request-level fault injection and hit counters shared by the provider simulators."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any


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
        "revocations",  # grants ended by a revocation request from the client (offboarding)
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()
        self._endpoints: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> None:
        if name not in self.NAMES:
            raise KeyError(f"unknown counter {name!r}")
        with self._lock:
            self._values[name] += amount

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


class Faults:
    """Pending faults; each ``take_*`` consumes one occurrence so "the next N requests" is exact."""

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
            self._outage_ends = 0.0
            self._flaky_rate = 0.0
            self._flaky_ends = 0.0
            self._flaky_random = random.Random(0)

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

    def take_rate_limit(self) -> RateLimitFault | None:
        with self._lock:
            return self._rate_limits.pop() if self._rate_limits else None

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
            }
