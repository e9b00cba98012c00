"""A tool call's deadline, carried down to the waits that need it instead of held by a timer of its own.

Every wait inside a call is bounded where it happens: a provider request by one timer at its own deadline or the
call's, whichever comes first (server/execute.py); a retry's wait by the time left (server/retry_policy.py); a
refresh the call waits for by `within_call` below. One timer per request, not two, on every call's path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class CallDeadlineError(TimeoutError):
    """The tool call's deadline passed while it waited; the executor answers it as the call's timeout."""


@asynccontextmanager
async def within_call(deadline: float | None) -> AsyncIterator[None]:
    """Bound the block by the call's `deadline` (on the event loop's clock; None: unbounded)."""
    if deadline is None:
        yield
        return
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise CallDeadlineError("the tool call's deadline passed") from None
