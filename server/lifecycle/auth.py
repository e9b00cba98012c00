"""`VaultAuth`: the httpx auth flow that attaches a fresh token and, when the provider says the token is
expired or refused, refreshes once and sends the request once more (the shape of httpx's DigestAuth)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx2

from providers.base import Classification, Verdict
from server.connectors import Connector
from server.lifecycle.tokens import TokenManager
from server.monitoring import tracing
from server.monitoring.events import EventRecorder
from server.vault import ConnectedAccount

REFRESH_AND_RETRY = (Verdict.EXPIRED, Verdict.AUTH_FAILED)


class VaultAuth(httpx2.Auth):

    def __init__(self, tokens: TokenManager, account: ConnectedAccount, connector: Connector, events: EventRecorder):
        self.tokens = tokens
        self.account = account
        self.connector = connector
        self.events = events
        self.classification: Classification | None = None

    def sync_auth_flow(self, request: httpx2.Request):  # pragma: no cover - the server only uses async clients
        raise RuntimeError("VaultAuth needs an async client")

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        snapshot = await self.tokens.fresh_token(self.account)
        request.headers["Authorization"] = f"Bearer {snapshot.access_token}"
        response = yield request
        await response.aread()
        self.classification = self.connector.provider.classify_api_response(response)
        if self.classification.verdict not in REFRESH_AND_RETRY:
            return
        await self.events.record("api_auth_failure", self.account, severity="warning",
                                 provider_error=self.classification.reason, version=snapshot.version)
        snapshot = await self.tokens.refresh(self.account, snapshot.version, trigger="reactive")
        request.headers["Authorization"] = f"Bearer {snapshot.access_token}"
        with tracing.side_span("provider_retry", connector=self.connector.name, trigger="reactive") as span:
            response = yield request
            await response.aread()
            self.classification = self.connector.provider.classify_api_response(response)
            tracing.annotate(span, http_status=response.status_code, verdict=self.classification.verdict.value)
