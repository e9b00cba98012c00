"""Why a tool call did not succeed, as exceptions raised deep down and turned into results at the top."""

from __future__ import annotations

from providers.base import OutcomeUnknownError, RequestRejectedError


class ToolFailure(Exception):
    """Base of every failure that becomes a structured result. `message` is safe for the agent to read."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class GrantGone(ToolFailure):
    """The grant cannot be used any more; only the account owner can bring it back (magic link)."""


class AdminActionRequired(ToolFailure):
    """Someone with authority over the account or the app must act (deactivated user, missing scope, bad client)."""


class RateLimited(ToolFailure):
    def __init__(self, reason: str, message: str, retry_after: float | None):
        super().__init__(reason, message)
        self.retry_after = retry_after


class UpstreamFailure(ToolFailure):
    def __init__(
        self, reason: str, message: str, *, retryable: bool, outcome_unknown: bool = False, retry_after: float | None = None
    ):
        super().__init__(reason, message)
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after  # when calling again may help, if known


class OutcomeUnknown(UpstreamFailure, OutcomeUnknownError):
    """A write failed ambiguously: the provider may have applied it. Never repeated blindly."""

    def __init__(self, reason: str, message: str):
        super().__init__(reason, message, retryable=False, outcome_unknown=True)


class InvalidInput(ToolFailure, RequestRejectedError):
    """The arguments were refused, by us or by the provider; repeating the same call will not help."""
