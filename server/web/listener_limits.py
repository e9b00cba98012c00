"""The HTTP listener's limits against slow and greedy clients: uvicorn's own (keep-alive timeout, header size,
concurrency) plus the ones it lacks, deadlines for a request's head and for its body, so a slow-loris client that
opens a connection and trickles (or never sends) its request is closed instead of holding a connection forever.

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
    body_timeout_seconds: float = 30
    keep_alive_seconds: int = 5
    max_header_bytes: int = 16384
    max_concurrency: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ListenerLimits:
        return cls(
            header_timeout_seconds=settings.http_header_timeout_seconds,
            body_timeout_seconds=settings.http_body_timeout_seconds,
            keep_alive_seconds=settings.http_keep_alive_seconds,
            max_header_bytes=settings.http_max_header_bytes,
            max_concurrency=settings.http_max_concurrency,
        )

    def uvicorn_options(self) -> dict[str, Any]:
        return {
            "http": deadline_protocol(self.header_timeout_seconds, self.body_timeout_seconds),
            "timeout_keep_alive": self.keep_alive_seconds,
            "h11_max_incomplete_event_size": self.max_header_bytes,
            "limit_concurrency": self.max_concurrency,
        }


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with two deadlines: a request's head must be complete within `header_timeout_seconds`
    of the connection opening (or of the previous answer on a kept-alive connection), and its body, if any, within
    `body_timeout_seconds` of the head. A request received in time is never cut short: long answers (SSE streams)
    are not affected. Our endpoints take small bodies (a form, a JSON-RPC message), so the body deadline is generous."""

    header_timeout_seconds: float = 10
    body_timeout_seconds: float = 30

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: object = None  # the h11 state the armed deadline is for: IDLE (head) or SEND_BODY
        super().connection_made(transport)
        self._track_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        self._track_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_deadline()  # the next request on this connection gets the same deadlines

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _track_deadline(self) -> None:
        state = self.conn.their_state
        if self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            self._cancel_deadline()
        elif state is not self._waiting_for:
            self._cancel_deadline()
            seconds = self.header_timeout_seconds if state is h11.IDLE else self.body_timeout_seconds
            self._waiting_for = state
            self._deadline = self.loop.call_later(seconds, self._deadline_passed, state)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._waiting_for = None, None

    def _deadline_passed(self, state: object) -> None:
        self._deadline, self._waiting_for = None, None
        if self.conn.their_state is state and not self.transport.is_closing():
            self.transport.close()  # an app still reading the body sees http.disconnect


def deadline_protocol(header_seconds: float, body_seconds: float) -> type[DeadlineProtocol]:
    return type(
        "DeadlineProtocol", (DeadlineProtocol,), {"header_timeout_seconds": header_seconds, "body_timeout_seconds": body_seconds}
    )
