"""Ending grants at their provider: removing an account, replacing a grant on reconnect, refusing a connect made
with the wrong provider account. The account is gone for agents at once; the upstream revocation is tried now
and, while the provider cannot be reached or refuses, retried from the database by every worker's background.

How a grant ends is the provider's business (`Provider.revocation`); nothing here names a provider."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import httpx2

from providers.base import RFC7009, UNSUPPORTED, GrantToEnd, RevocationRequest
from server.connectors import Connector
from server.lifecycle.oauth import revoke_grant
from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.events import EventRecorder
from server.monitoring.logging import get_logger
from server.settings import Settings
from server.vault import ConnectedAccount, TokenSecrets, Vault
from server.vault.models import RevocationState, utcnow
from server.vault.revocations import PendingRevocation, Removal, Revocations

MAX_RESPONSE_BYTES = 64 * 1024
ATTEMPT_LEASE = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=6)
# A refused connect's tokens when the account's own provider account may hold a live grant beside them.
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Removed:
    account: ConnectedAccount
    revocation: str  # done | pending | unsupported | nothing (no credential was left)


class Offboarding:
    def __init__(
        self,
        settings: Settings,
        vault: Vault,
        connectors: dict[str, Connector],
        events: EventRecorder,
        http: httpx2.AsyncClient,
        *,
        forget: Callable[[ConnectedAccount], None] = lambda account: None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings = settings
        self.vault = vault
        self.connectors = connectors
        self.events = events
        self.http = http
        self.forget = forget  # drops what this process cached about an account
        self.clock = clock
        self.revocations = Revocations(vault)
        self.log = get_logger("grantkeeper.offboarding")

    async def remove(self, account: ConnectedAccount, *, actor: str) -> Removed:
        """Wipe the account's credentials (agents get `reauth_required`, reason `removed`, from now on), record who
        removed it, then end the grant at the provider, now or later."""
        removal: Removal = await anyio.to_thread.run_sync(lambda: self.revocations.remove_account(account.id, actor=actor))
        self.forget(account)
        await self.events.record(EventKind.ACCOUNT_REMOVED, removal.account, severity=Severity.WARNING, removed_by=actor)
        if removal.revocation is None:
            return Removed(removal.account, "nothing")
        if not await anyio.to_thread.run_sync(self.revocations.claim, removal.revocation.id, ATTEMPT_LEASE):
            return Removed(removal.account, RevocationState.PENDING.value)
        state = await self.attempt(removal.revocation, removal.account)
        return Removed(removal.account, state.value)

    async def end_replaced(self, account: ConnectedAccount, pending: PendingRevocation) -> RevocationState:
        """A reconnect replaced this grant (queued in the reconnect's transaction): end it now, or later."""
        if not await anyio.to_thread.run_sync(self.revocations.claim, pending.id, ATTEMPT_LEASE):
            return RevocationState.PENDING
        return await self.attempt(pending, account)

    async def end_refused(
        self, account: ConnectedAccount, secrets: TokenSecrets, *, same_account: bool = False
    ) -> RevocationState:
        """Tokens from a connect that was refused (another provider account than the one on record, an identity
        that could not be verified): ended at the provider, not just dropped. `same_account`: the account's own
        provider account may hold a live grant beside it, so only this token is ended. Tried at once without
        touching the vault; queued only when that fails."""
        purpose = SUPERSEDED if same_account else "refused"
        transient = PendingRevocation("", account.id, account.connector, purpose, 0, secrets)
        accepted, error = await self._call(transient)
        if accepted is not None:
            return RevocationState.DONE if accepted else RevocationState.UNSUPPORTED
        pending = await anyio.to_thread.run_sync(lambda: self.revocations.queue(account.id, account.connector, purpose, secrets))
        await anyio.to_thread.run_sync(
            lambda: self.revocations.finish(pending.id, RevocationState.PENDING, error=error, retry_at=self.clock() + FIRST_RETRY)
        )
        await self.events.record(
            EventKind.UPSTREAM_REVOCATION_FAILED, account, severity=Severity.WARNING, purpose=purpose, error=error, attempts=1
        )
        return RevocationState.PENDING

    async def retry_due(self) -> int:
        """One pass over the revocations whose retry is due; returns how many were attempted."""
        due = await anyio.to_thread.run_sync(lambda: self.revocations.claim_due(self.clock(), ATTEMPT_LEASE))
        for pending in due:
            try:
                account = await anyio.to_thread.run_sync(self.vault.accounts.get, pending.account_id)
            except LookupError:
                account = None
            await self.attempt(pending, account)
        return len(due)

    async def run(self) -> None:
        """Retry pending revocations every `revocation_retry_seconds` until cancelled; a failed pass is logged."""
        while True:
            try:
                await self.retry_due()
            except Exception:
                self.log.warning("revocation_pass_failed", exc_info=True)
            await anyio.sleep(self.settings.revocation_retry_seconds)

    # ---- one attempt ------------------------------------------------------------------------------------
    async def attempt(self, pending: PendingRevocation, account: ConnectedAccount | None) -> RevocationState:
        accepted, error = await self._call(pending)
        if accepted is True:
            state, retry_at = RevocationState.DONE, None
        elif accepted is False:
            state, retry_at = RevocationState.UNSUPPORTED, None
        else:
            state = RevocationState.PENDING
            retry_at = self.clock() + min(LONGEST_RETRY, FIRST_RETRY * 2 ** min(pending.attempts, 16))
        await anyio.to_thread.run_sync(lambda: self.revocations.finish(pending.id, state, error=error, retry_at=retry_at))
        kind = {
            RevocationState.DONE: EventKind.UPSTREAM_REVOCATION_COMPLETED,
            RevocationState.UNSUPPORTED: EventKind.UPSTREAM_REVOCATION_UNSUPPORTED,
        }.get(state, EventKind.UPSTREAM_REVOCATION_FAILED)
        severity = Severity.INFO if state is RevocationState.DONE else Severity.WARNING
        await self.events.record(
            kind,
            account,
            severity=severity,
            purpose=pending.purpose,
            attempts=pending.attempts + 1,
            **({"error": error} if error else {}),
        )
        return state

    async def _call(self, pending: PendingRevocation) -> tuple[bool | None, str | None]:
        """(True, None): the provider ended the grant. (False, why): nothing can be called for it. (None, why):
        the provider could not be reached or refused; worth trying again."""
        connector = self.connectors.get(pending.connector)
        if connector is None:
            return False, "connector_not_configured"
        grant = GrantToEnd(
            pending.secrets.access_token,
            pending.secrets.refresh_token,
            connector.client_id,
            connector.client_secret,
            replaced=pending.purpose in ("replaced", SUPERSEDED),
        )
        how = connector.provider.revocation(connector.spec, grant)
        timeout = self.settings.refresh_timeout_seconds
        if how == UNSUPPORTED or (how == RFC7009 and connector.revoke_url is None):
            # A replaced grant a provider can only end with its successor (Google) is left to lapse.
            return False, "would_end_the_new_grant" if grant.replaced else "provider_has_no_revocation"
        if how == RFC7009:
            hint = "refresh_token" if grant.refresh_token else "access_token"
            ok = await revoke_grant(connector, grant.refresh_token or grant.access_token, token_type_hint=hint, timeout=timeout)
            return (True, None) if ok else (None, "refused_or_unreachable")
        assert isinstance(how, RevocationRequest)
        try:
            response = await self._send(how, timeout)
        except (httpx2.HTTPError, TimeoutError) as exc:
            return None, "timeout" if isinstance(exc, httpx2.TimeoutException | TimeoutError) else "unreachable"
        if connector.provider.revocation_accepted(response):
            return True, None
        return None, f"http_{response.status_code}"

    async def _send(self, request: RevocationRequest, timeout: float) -> httpx2.Response:
        """The provider's revocation request under a total deadline, its answer read up to a size bound."""
        with anyio.fail_after(timeout):
            built = self.http.build_request(
                request.method, request.url, data=request.data, json=request.json, headers=request.headers
            )
            if request.basic_auth is not None:
                pair = ":".join(request.basic_auth).encode()
                built.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            response = await self.http.send(built, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
        # Already decoded: only the content type is kept, so nothing tries to decode it again.
        headers = {"content-type": response.headers.get("content-type", "application/octet-stream")}
        return httpx2.Response(response.status_code, headers=headers, content=bytes(body[:MAX_RESPONSE_BYTES]))
