"""`RetryPolicy`: which failed provider requests are sent again, how often, and after how long a wait — the one
place that decides it. Tests turn real waiting off with `set_testing(True)` (or `with testing():`), as stamina's
switch does: every decision stays the same, only the sleeping is skipped.

    policy = RetryPolicy(attempts=3, max_retry_after=10)
    response = await policy.call(send_once, time_left=session.time_left)
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState

from server.failures import RateLimitedError, ToolCallError, UpstreamCallError

R = TypeVar("R")

_testing = False


def set_testing(on: bool) -> None:
    """Skip every wait (a Retry-After, a backoff) while `on`; what is retried and when to give up stay the same."""
    global _testing
    _testing = on


@contextlib.contextmanager
def testing() -> Iterator[None]:
    """`with retry_policy.testing(): ...` — `set_testing(True)` for the block."""
    before = _testing
    set_testing(True)
    try:
        yield
    finally:
        set_testing(before)


def is_testing() -> bool:
    return _testing


async def _sleep(seconds: float) -> None:
    await anyio.sleep(0 if _testing else seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Transient failures are retried within the call's deadline; a write that may have been applied never is.

    `attempts` counts every request, the first included. Without a Retry-After the wait is exponential backoff
    with full jitter (`initial_backoff`, doubled per failed attempt, at most `max_backoff`); a Retry-After is
    honoured when it is at most `max_retry_after` and shorter than the time left, else the agent gets
    `rate_limited` and decides. `retry_on` names the failures worth another request (an `UpstreamCallError` only
    when it says it is retryable); `idempotent=False` (a write) additionally refuses any failure whose outcome is
    unknown."""

    attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 60.0
    max_retry_after: float = 10.0
    retry_on: tuple[type[ToolCallError], ...] = (RateLimitedError, UpstreamCallError)
    idempotent: bool = True

    def retries(self, error: BaseException, time_left: float) -> bool:
        """Whether `error` is worth sending the request once more, with `time_left` seconds of the call left."""
        if not isinstance(error, self.retry_on) or time_left <= 0:
            return False
        if isinstance(error, RateLimitedError):
            return error.retry_after is None or (error.retry_after <= self.max_retry_after and error.retry_after < time_left)
        if isinstance(error, UpstreamCallError):
            return error.retryable and (self.idempotent or not error.outcome_unknown)
        return True

    def wait_after(self, error: BaseException | None, failed_attempts: int) -> float:
        """Retry-After when the provider gave one, else exponential backoff with full jitter."""
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after
        return random.uniform(0, min(self.max_backoff, self.initial_backoff * 2 ** (failed_attempts - 1)))

    async def call(
        self,
        attempt: Callable[[int], Awaitable[R]],
        *,
        time_left: Callable[[], float] = lambda: math.inf,
        on_retry: Callable[[int, BaseException | None], None] = lambda failed_attempts, error: None,
    ) -> R:
        """`await attempt(1)`, then `attempt(2)`, … while the failure is worth retrying, the attempts last and the
        wait fits in `time_left()`. The last failure is raised as it was."""
        try:
            return await attempt(1)  # the common case pays for no retry machinery at all
        except ToolCallError as error:
            if self.attempts < 2 or not self.retries(error, time_left()):
                raise
            delay = self.wait_after(error, 1)
            if delay >= time_left():
                raise  # the wait alone would outlast the call: the agent gets this failure, not a bare timeout
            on_retry(1, error)
            await _sleep(delay)

        def give_up(state: RetryCallState) -> bool:
            return state.attempt_number + 1 >= self.attempts or (state.upcoming_sleep or 0) >= time_left()

        def failure(state: RetryCallState) -> BaseException | None:
            return None if state.outcome is None else state.outcome.exception()

        retrying = AsyncRetrying(
            sleep=_sleep,
            stop=give_up,
            wait=lambda state: self.wait_after(failure(state), state.attempt_number + 1),
            retry=lambda state: (error := failure(state)) is not None and self.retries(error, time_left()),
            before_sleep=lambda state: on_retry(state.attempt_number + 1, failure(state)),
            reraise=True,
        )
        async for retry in retrying:
            with retry:
                return await attempt(retry.retry_state.attempt_number + 1)
        raise AssertionError("unreachable")  # pragma: no cover
