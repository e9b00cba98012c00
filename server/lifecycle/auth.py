"""`VaultAuth`: one authenticated exchange with a provider. It attaches a fresh token and, when the provider says
the token is expired or refused, refreshes once and sends the request once more.

It is not an httpx auth flow: httpx reads a refused answer whole before resending, and every answer here is read
by the caller's `send`, within the connector's size bound (server/bounded_read.py), before it is classified."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2

from providers.base import Classification, Verdict
from server.connectors import Connector
from server.lifecycle.tokens import TokenManager
from server.monitoring import tracing
from server.monitoring.events import EventRecorder
from server.vault import ConnectedAccount

REFRESH_AND_RETRY = (Verdict.EXPIRED, Verdict.AUTH_FAILED)
Send = Callable[[httpx2.Request], Awaitable[httpx2.Response]]


class VaultAuth:
    def __init__(self, tokens: TokenManager, account: ConnectedAccount, connector: Connector, events: EventRecorder):
        self.tokens = tokens
        self.account = account
        self.connector = connector
        self.events = events

    async def exchange(self, request: httpx2.Request, send: Send) -> tuple[httpx2.Response, Classification]:
        """`send(request)` with a fresh token, and once more after a refresh when the token was refused; returns
        the last answer (already read) and its classification."""
        snapshot = await self.tokens.fresh_token(self.account)
        request.headers["Authorization"] = f"Bearer {snapshot.access_token}"
        response = await send(request)
        classification = self.connector.provider.classify_api_response(response)
        if classification.verdict not in REFRESH_AND_RETRY:
            return response, classification
        await self.events.record(
            "api_auth_failure", self.account, severity="warning", provider_error=classification.reason, version=snapshot.version
        )
        snapshot = await self.tokens.refresh(self.account, snapshot.version, trigger="reactive")
        request.headers["Authorization"] = f"Bearer {snapshot.access_token}"
        with tracing.side_span("provider_retry", connector=self.connector.name, trigger="reactive") as span:
            response = await send(request)
            classification = self.connector.provider.classify_api_response(response)
            tracing.annotate(span, http_status=response.status_code, verdict=classification.verdict.value)
        return response, classification
