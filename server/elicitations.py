"""Clients waiting on a URL elicitation (a magic link they were asked to open), told when it is done.

When a tool answers a client that declared URL-mode elicitation with -32042 and a link, the request's session
proxy (through which a standalone notification reaches the client's connection) is remembered under the account
for at most WATCH_SECONDS. When a re-authorization of that
account completes in this process, each waiting session gets `notifications/elicitation/complete` with its
elicitation id (MCP 2025-11-25), so it may retry at once instead of polling.
"""

from __future__ import annotations

import time
from typing import Any

from server.monitoring.logging import get_logger

# A client stops waiting long before this; entries older than it are dropped.
WATCH_SECONDS = 3600


class ElicitationWatch:
    def __init__(self) -> None:
        self._waiting: dict[str, list[tuple[Any, str, float]]] = {}
        self.log = get_logger("grantkeeper.reauth")

    def watch(self, account: str, elicitation_id: str, session: Any) -> None:
        now = time.monotonic()
        for name in list(self._waiting):  # forget what nobody completed in time
            self._waiting[name] = [e for e in self._waiting[name] if now - e[2] < WATCH_SECONDS]
            if not self._waiting[name]:
                del self._waiting[name]
        entries = self._waiting.setdefault(account, [])
        if not any(e[0] is session and e[1] == elicitation_id for e in entries):
            entries.append((session, elicitation_id, now))

    async def completed(self, account: str) -> int:
        """Notify every session waiting on `account`; returns how many were told."""
        told = 0
        for session, elicitation_id, _ in self._waiting.pop(account, []):
            try:
                await session.send_elicit_complete(elicitation_id)
                told += 1
            except Exception as exc:  # the client went away meanwhile: nothing to tell
                self.log.info("elicitation_complete_not_sent", error=type(exc).__name__)
        return told
