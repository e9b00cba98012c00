"""The HTTP listener's limits against slow and greedy clients: uvicorn's own (keep-alive timeout, header size,
concurrency) plus the one it lacks, a deadline for a request's headers, so a slow-loris client that opens a
connection and trickles (or never sends) its request head is closed instead of holding a connection forever.

    config = uvicorn.Config(app, **ListenerLimits.from_settings(settings).uvicorn_options())
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.settings import Settings


@dataclass(frozen=True)
class ListenerLimits:
    header_timeout_seconds: float = 10
    keep_alive_seconds: int = 5
    max_header_bytes: int = 16384
    max_concurrency: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ListenerLimits:
        return cls(header_timeout_seconds=settings.http_header_timeout_seconds,
                   keep_alive_seconds=settings.http_keep_alive_seconds,
                   max_header_bytes=settings.http_max_header_bytes,
                   max_concurrency=settings.http_max_concurrency)

    def uvicorn_options(self) -> dict[str, Any]:
        return {"http": header_deadline_protocol(self.header_timeout_seconds),
                "timeout_keep_alive": self.keep_alive_seconds,
                "h11_max_incomplete_event_size": self.max_header_bytes,
                "limit_concurrency": self.max_concurrency}


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete within
    `header_timeout_seconds` of the connection opening (or of the previous response on a kept-alive connection).
    A request whose head arrived in time is never cut short: long answers (SSE streams) are not affected."""

    header_timeout_seconds: float = 10

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the request head is in (or the connection is done)
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self.conn.their_state is h11.IDLE and self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_seconds, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_seconds": seconds})
