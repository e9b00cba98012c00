"""`ProviderAuth`: one authenticated exchange with a provider, and the one place its verdict is decided.

It reads like httpx's DigestAuth: attach a fresh token and send; when the provider's classifier says the token
expired or was refused, refresh once and send once more; then the verdict decides — the answer, or the failure it
calls for, with the account status that failure changes. A status written from a verdict is conditional on the
credential version the call used, so a worker holding a stale token never marks a just-reconnected account.

It is not an httpx auth flow: httpx reads a refused answer whole before resending, and every answer here is read
by the caller's `send`, within the connector's size bound (server/bounded_read.py), before it is classified."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2

from providers.base import Classification, Verdict
from server import failures
from server.connectors import Connector
from server.deadlines import within_call
from server.lifecycle.account_status import change_status
from server.lifecycle.tokens import RefreshTrigger, TokenManager
from server.monitoring import tracing
from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.events import EventRecorder
from server.vault import AccountStatus, ConnectedAccount, CredentialSnapshot, Vault

# Verdicts on a token (not on the grant): refresh once and send once more.
REFRESH_AND_SEND_AGAIN = frozenset({Verdict.EXPIRED, Verdict.AUTH_FAILED})
Send = Callable[[httpx2.Request], Awaitable[httpx2.Response]]


class ProviderAuth:
    """`await ProviderAuth(...).send(request, send, idempotent=...)`: the provider's OK answer, or a `failures`
    exception saying why there is none."""

    def __init__(
        self, tokens: TokenManager, vault: Vault, events: EventRecorder, account: ConnectedAccount, connector: Connector
    ):
        self.tokens = tokens
        self.vault = vault
        self.events = events
        self.account = account
        self.connector = connector

    async def send(
        self, request: httpx2.Request, send: Send, *, idempotent: bool, deadline: float | None = None
    ) -> httpx2.Response:
        """`send(request)` with a fresh token, and once more after a refresh when the token was refused; returns
        the OK answer (already read) or raises the failure the last answer's verdict calls for. A refresh this
        waits for ends by the tool call's `deadline` (`CallDeadlineError`)."""
        snapshot = await self.tokens.fresh_token(self.account, deadline=deadline)
        response, verdict = await self._send_with(snapshot, request, send)
        if verdict.verdict in REFRESH_AND_SEND_AGAIN:
            await self.events.record(
                EventKind.API_AUTH_FAILURE,
                self.account,
                severity=Severity.WARNING,
                provider_error=verdict.reason,
                version=snapshot.version,
            )
            async with within_call(deadline):
                snapshot = await self.tokens.refresh(self.account, snapshot.version, trigger=RefreshTrigger.REACTIVE)
            with tracing.side_span("provider_retry", connector=self.connector.name, trigger=RefreshTrigger.REACTIVE) as span:
                response, verdict = await self._send_with(snapshot, request, send)
                tracing.annotate(span, http_status=response.status_code, verdict=verdict.verdict.value)
            if verdict.verdict in REFRESH_AND_SEND_AGAIN:
                # Refused even with a token refreshed a moment ago: the grant itself is gone.
                raise await self._grant_gone("token_rejected", verdict.message, snapshot.version)
        return await self._raise_unless_ok(verdict, response, snapshot.version, idempotent=idempotent)

    async def _send_with(
        self, snapshot: CredentialSnapshot, request: httpx2.Request, send: Send
    ) -> tuple[httpx2.Response, Classification]:
        request.headers["Authorization"] = f"Bearer {snapshot.access_token}"
        response = await send(request)
        return response, self.connector.provider.classify_api_response(response)

    async def _raise_unless_ok(
        self, verdict: Classification, response: httpx2.Response, version: int, *, idempotent: bool
    ) -> httpx2.Response:
        """Return an OK response, or raise the failure its verdict calls for."""
        name = self.connector.spec.display_name
        match verdict.verdict:
            case Verdict.OK:
                return response
            case Verdict.REVOKED:
                raise await self._grant_gone(verdict.reason, verdict.message, version)
            case Verdict.INACTIVE:
                await change_status(
                    self.vault,
                    self.events,
                    self.account,
                    AccountStatus.ADMIN_ACTION_REQUIRED,
                    verdict.reason,
                    credential_version=version,
                )
                self.tokens.forget(self.account.id)
                raise failures.AdminActionRequiredError(verdict.reason, verdict.message)
            case Verdict.FORBIDDEN:
                raise failures.AdminActionRequiredError(verdict.reason, verdict.message)
            case Verdict.RATE_LIMITED:
                raise failures.RateLimitedError(verdict.reason, verdict.message, verdict.retry_after)
            case Verdict.TRANSIENT:
                message = verdict.message or f"{name} is having trouble."
                if idempotent:
                    raise failures.UpstreamCallError(verdict.reason, message, retryable=True)
                raise failures.AmbiguousWriteError(verdict.reason, message)
            case Verdict.INVALID_INPUT | Verdict.NOT_FOUND:
                raise failures.InvalidInputError(verdict.reason, verdict.message)
            case _:
                if verdict.reason == "malformed_response" and not idempotent:
                    # An answer that is not the provider's shape (Slack's) tells nothing about a write: the operation
                    # may look for it, as after a lost answer.
                    raise failures.AmbiguousWriteError(verdict.reason, verdict.message or f"{name} sent an odd answer.")
                raise failures.UpstreamCallError(verdict.reason, verdict.message or f"{name} refused the call.", retryable=False)

    async def _grant_gone(self, reason: str, message: str, version: int) -> failures.GrantGoneError:
        """The account needs its owner again — said in the vault (and alerted) only while the credential is still
        the one this call used: after a reconnect or a refresh by another worker, the verdict is about the past."""
        self.tokens.forget(self.account.id)
        if await change_status(
            self.vault, self.events, self.account, AccountStatus.REAUTH_REQUIRED, reason, credential_version=version
        ):
            await self.events.record(EventKind.REAUTH_REQUIRED, self.account, severity=Severity.CRITICAL, reason=reason)
        return failures.GrantGoneError(reason, message)
