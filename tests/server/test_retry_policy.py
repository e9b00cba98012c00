"""`RetryPolicy` on its own: what is sent again, what never is, and the testing switch that skips only the waits."""

from __future__ import annotations

import time

import pytest

from server import retry_policy
from server.failures import AmbiguousWriteError, InvalidInputError, RateLimitedError, UpstreamCallError
from server.retry_policy import RetryPolicy

pytestmark = pytest.mark.anyio


class Provider:
    """Raises the given errors, one per attempt, then answers."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.attempts: list[int] = []

    async def __call__(self, attempt: int) -> str:
        self.attempts.append(attempt)
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


async def test_a_retry_after_is_honoured_without_being_waited_out_under_the_testing_switch():
    provider = Provider(RateLimitedError("ratelimited", "slow down", retry_after=30))
    started = time.monotonic()
    with retry_policy.testing():
        answer = await RetryPolicy(max_retry_after=60).call(provider)
    assert answer == "answer" and provider.attempts == [1, 2]
    assert time.monotonic() - started < 5  # the 30 s were decided on, not slept
    assert not retry_policy.is_testing()  # the switch is back as it was


async def test_a_retry_after_beyond_the_longest_wait_goes_to_the_agent():
    provider = Provider(RateLimitedError("ratelimited", "slow down", retry_after=120))
    with retry_policy.testing(), pytest.raises(RateLimitedError):
        await RetryPolicy(max_retry_after=10).call(provider)
    assert provider.attempts == [1]


async def test_a_retry_after_longer_than_the_time_left_goes_to_the_agent():
    provider = Provider(RateLimitedError("ratelimited", "slow down", retry_after=5))
    with retry_policy.testing(), pytest.raises(RateLimitedError):
        await RetryPolicy(max_retry_after=10).call(provider, time_left=lambda: 2.0)
    assert provider.attempts == [1]


async def test_transient_failures_are_retried_up_to_the_attempts_and_the_last_one_is_raised():
    provider = Provider(*(UpstreamCallError(f"http_{n}", "down", retryable=True) for n in (500, 502, 503, 504)))
    with retry_policy.testing(), pytest.raises(UpstreamCallError) as last:
        await RetryPolicy(attempts=3, initial_backoff=5).call(provider)
    assert provider.attempts == [1, 2, 3] and last.value.reason == "http_503"


async def test_a_write_that_may_have_been_applied_is_never_sent_again():
    ambiguous = Provider(AmbiguousWriteError("timeout", "no answer"))
    unknown = Provider(UpstreamCallError("http_502", "lost", retryable=True, outcome_unknown=True))
    with retry_policy.testing():
        with pytest.raises(AmbiguousWriteError):
            await RetryPolicy().call(ambiguous)
        with pytest.raises(UpstreamCallError):
            await RetryPolicy(idempotent=False).call(unknown)
    assert ambiguous.attempts == [1] and unknown.attempts == [1]


async def test_a_refused_argument_is_not_retried():
    provider = Provider(InvalidInputError("channel_not_found", "no such channel"))
    with pytest.raises(InvalidInputError):
        await RetryPolicy().call(provider)
    assert provider.attempts == [1]
