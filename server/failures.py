"""Why a tool call did not succeed: the exceptions raised deep down, each turned into the agent-facing result model
of the same family at the top (server/results.py).

Exceptions end in `Error`; the result models they become are nouns (`RateLimitedError` → `results.RateLimited`):

    GrantGoneError            → ReauthRequired (with a magic link minted by the executor)
    AdminActionRequiredError  → AdminActionRequired
    RateLimitedError          → RateLimited
    UpstreamCallError         → UpstreamError (AmbiguousWriteError: with outcome_unknown)
    InvalidInputError         → InvalidInput
"""

from __future__ import annotations

from providers.base import OutcomeUnknownError, RequestRejectedError


class ToolCallError(Exception):
    """Base of every failure that becomes a structured result. `message` is safe for the agent to read."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class GrantGoneError(ToolCallError):
    """The grant cannot be used any more; only the account owner can bring it back (magic link)."""


class AdminActionRequiredError(ToolCallError):
    """Someone with authority over the account or the app must act (deactivated user, missing scope, bad client)."""


class RateLimitedError(ToolCallError):
    """The provider asked us to slow down; `retry_after` (seconds) when it said how long."""

    def __init__(self, reason: str, message: str, retry_after: float | None):
        super().__init__(reason, message)
        self.retry_after = retry_after


class UpstreamCallError(ToolCallError):
    """The provider (or the way to it) failed. `retryable`: calling again may succeed; `outcome_unknown`: a write
    may have been applied."""

    def __init__(
        self, reason: str, message: str, *, retryable: bool, outcome_unknown: bool = False, retry_after: float | None = None
    ):
        super().__init__(reason, message)
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after  # when calling again may help, if known


class AmbiguousWriteError(UpstreamCallError, OutcomeUnknownError):
    """A write failed ambiguously: the provider may have applied it. Never repeated blindly."""

    def __init__(self, reason: str, message: str):
        super().__init__(reason, message, retryable=False, outcome_unknown=True)


class InvalidInputError(ToolCallError, RequestRejectedError):
    """The arguments were refused, by us or by the provider; repeating the same call will not help."""
