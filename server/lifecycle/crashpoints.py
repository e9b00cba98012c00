"""Test hook: kill this process at an exact step of a refresh, to prove a crash there loses nothing silently.

Set `GRANTKEEPER_TEST_CRASH_AT` to one of `STEPS` and the process sends itself SIGKILL when a refresh reaches that
step — no cleanup, no `finally`, exactly like `kill -9`. Unset (always, outside the crash tests) it does nothing.
Used by tests/lifecycle/test_crash_safety.py; never set it in a deployment.
"""

from __future__ import annotations

import os
import signal

CRASH_AT_ENV = "GRANTKEEPER_TEST_CRASH_AT"
STEPS = (
    "before_provider_call",  # lease taken, refresh token not yet presented
    "after_provider_rotated",  # the provider rotated the refresh token; the answer is not stored yet
    "after_commit",  # the new tokens are committed; the caller has not been answered
)


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
