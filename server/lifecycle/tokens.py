"""`fresh_token` and `refresh`: where every refresh of a grant is decided and carried out.

One refresh per account in this process (single-flight), one per grant across processes (a lease taken by
compare-and-set on the credential row, never a database lock held over the network call, renewed as a heartbeat
while the token request is in flight), new tokens committed before anyone uses them, and a refused refresh token
re-checked against the row before the grant is declared dead. A dead grant's refresh token is never presented again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import anyio

from providers.base import TokenVerdict
from server.cache import RevalidatingCache
from server.connectors import Connector
from server.deadlines import within_call
from server.failures import AdminActionRequiredError, GrantGoneError, UpstreamCallError
from server.lifecycle.crashpoints import crash_point
from server.lifecycle.grants import credential_write
from server.lifecycle.oauth import TokenEndpointError, TokenGrant, refresh_grant
from server.monitoring import tracing
from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.events import EventRecorder
from server.monitoring.logging import get_logger
from server.settings import Settings
from server.vault import (
    NO_REFRESH_TOKEN,
    AccountStatus,
    ConnectedAccount,
    CredentialSnapshot,
    CredentialWrite,
    Vault,
)
from server.vault.credentials import DEAD_OUTCOME, UNCERTAIN_OUTCOMES
from server.vault.models import RefreshOutcome, utcnow
from server.vault.threads import in_vault_thread

LOSER_POLL_FIRST_SECONDS = 0.02
LOSER_POLL_MAX_SECONDS = 0.25
# The lease owner renews its lease this many times per lease period, so one late renewal does not lose it.
HEARTBEATS_PER_LEASE = 3
# The mandatory window is at most this fraction of a token's lifetime, so a short-lived token is not refreshed
# on every call (a 60 s token: the last 12 s, not the whole minute).
MANDATORY_WINDOW_FRACTION = 0.2
# Outcomes after which the row's due time is a cooldown: no worker asks the token endpoint again before it.
COOLDOWN_OUTCOMES = (RefreshOutcome.FAILED, RefreshOutcome.AMBIGUOUS)


class RefreshTrigger(StrEnum):
    """Why a refresh was asked for (events and spans say it); callers may name others (a test, a tool)."""

    EXPIRY = "expiry"  # the token is inside its mandatory window: refreshed before this call uses it
    PROACTIVE = "proactive"  # 75 % of its lifetime passed: refreshed in the background
    REACTIVE = "reactive"  # the provider refused it (server/lifecycle/auth.py)
    SCHEDULED = "scheduled"  # the scheduler's batch claim
    CONSOLE = "console"  # an operator pressed "refresh now"


def worker_id() -> str:
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TokenManager:
    def __init__(self, settings: Settings, vault: Vault, connectors: dict[str, Connector], events: EventRecorder):
        self.settings = settings
        self.vault = vault
        self.connectors = connectors
        self.events = events
        self.owner = worker_id()
        self.log = get_logger("grantkeeper.lifecycle")
        self.clock: Callable[[], datetime] = utcnow  # injectable: tests simulate a token's life
        # Told of every new due time (the scheduler wakes for one earlier than it planned to).
        self.due_listeners: list[Callable[[datetime], None]] = []
        # Versions only grow, so a re-read never replaces a newer snapshot with an older one.
        self._cache: RevalidatingCache[str, CredentialSnapshot] = RevalidatingCache(
            settings.token_cache_seconds, self._read, accept=lambda old, new: new.version >= old.version
        )
        # The refresh in flight per account; None as its result: a scheduled refresh lost its lease before calling.
        self._inflight: dict[str, asyncio.Future[CredentialSnapshot | None]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # ---- reading ------------------------------------------------------------------------------------
    async def current(self, account: ConnectedAccount) -> CredentialSnapshot:
        """The stored credential, from an in-process cache that is re-read in the background. A stale entry is
        harmless: a rejected token leads to `refresh`, which always reads the row itself."""
        snapshot = await self._cache.get(account.id)
        if snapshot is None:
            raise GrantGoneError("not_connected", "The account has no credentials yet.")
        return snapshot

    async def _read(self, account_id: str) -> CredentialSnapshot | None:
        return await in_vault_thread(self.vault.credentials.read, account_id)

    def _remember(self, snapshot: CredentialSnapshot) -> None:
        cached = self._cache.peek(snapshot.account_id)
        if cached is None or cached.version <= snapshot.version:
            self._cache.put(snapshot.account_id, snapshot)

    def forget(self, account_id: str) -> None:
        self._cache.forget(account_id)

    # ---- deciding -----------------------------------------------------------------------------------
    async def fresh_token(self, account: ConnectedAccount, *, deadline: float | None = None) -> CredentialSnapshot:
        """A token that is good for this call: refreshed first when (nearly) expired — ending by the tool call's
        `deadline` (server/deadlines.py) — refreshed in the background once 75 % of its lifetime has passed."""
        snapshot = self._cache.cached(account.id) or await self.current(account)
        now = self.clock()
        if snapshot.access_expires_at is not None:
            mandatory_from = snapshot.access_expires_at - self._mandatory_window(snapshot)
            if now >= mandatory_from:
                if snapshot.refresh_token is None and now < snapshot.access_expires_at:
                    return snapshot
                # Without a refresh token this declares the grant dead (with its reason), once, for the fleet.
                async with within_call(deadline):
                    return await self.refresh(account, snapshot.version, trigger=RefreshTrigger.EXPIRY)
        if snapshot.refresh_due_at is not None and now >= snapshot.refresh_due_at and snapshot.refresh_token:
            self.refresh_in_background(account, snapshot.version, trigger=RefreshTrigger.PROACTIVE)
        return snapshot

    def refresh_in_background(self, account: ConnectedAccount, stale_version: int, trigger: str) -> None:
        if account.id in self._inflight:
            return
        task = asyncio.ensure_future(self._background_refresh(account, stale_version, trigger))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _background_refresh(self, account: ConnectedAccount, stale_version: int, trigger: str) -> None:
        try:
            await self.refresh(account, stale_version, trigger=trigger)
        except (GrantGoneError, AdminActionRequiredError, UpstreamCallError) as failure:
            # Inside the advisory window the current token still works; the failure is recorded as an event.
            self.log.info("advisory_refresh_deferred", account=account.display_name, reason=failure.reason)

    async def refresh(self, account: ConnectedAccount, stale_version: int, *, trigger: str) -> CredentialSnapshot:
        """Replace the token at `stale_version` (or pick up the one another worker already put there)."""
        future = self._inflight.get(account.id)
        if future is None:
            started: asyncio.Future[CredentialSnapshot | None] = asyncio.ensure_future(
                tracing.traced(
                    "refresh",
                    self._span_attributes(account, trigger),
                    self._refresh_once_per_grant,
                    account,
                    stale_version,
                    trigger,
                )
            )
            self._inflight[account.id] = future = started
            future.add_done_callback(lambda done: self._settle(account.id, done))
        snapshot = await asyncio.shield(future)
        if snapshot is None:
            # We joined a scheduled refresh that lost its lease before calling the provider: refresh ourselves.
            if self._inflight.get(account.id) is future:
                del self._inflight[account.id]
            return await self.refresh(account, stale_version, trigger=trigger)
        return snapshot

    async def refresh_claimed(
        self, account: ConnectedAccount, version: int, *, trigger: str = RefreshTrigger.SCHEDULED
    ) -> CredentialSnapshot | None:
        """Refresh a row this worker already leased (the scheduler's batch claim) through the same path as every
        other refresh. None when the lease was lost before the provider call (nothing was sent)."""
        future = asyncio.ensure_future(
            tracing.traced("refresh", self._span_attributes(account, trigger), self._refresh_claimed, account, version, trigger)
        )
        if account.id not in self._inflight:
            # In-process callers that need this grant now wait for this refresh instead of polling the row.
            self._inflight[account.id] = future
        future.add_done_callback(lambda done: self._settle(account.id, done))
        return await future

    async def _refresh_claimed(self, account: ConnectedAccount, version: int, trigger: str) -> CredentialSnapshot | None:
        lease_for = timedelta(seconds=self.settings.lease_seconds)
        # The claim may have waited for a concurrency slot or the provider's pace: start with a whole lease.
        if not await in_vault_thread(self.vault.credentials.renew_lease, account.id, version, self.owner, lease_for):
            self.log.info("claimed_lease_lost", account=account.display_name, version=version)
            return None
        row: CredentialSnapshot | None = await in_vault_thread(self.vault.credentials.read, account.id)
        if row is None or row.version != version or row.lease_owner != self.owner:
            return row
        interrupted = row.last_refresh_outcome in UNCERTAIN_OUTCOMES
        return await self._refresh_holding_lease(account, self.connectors[account.connector], row, trigger, interrupted)

    @staticmethod
    def _span_attributes(account: ConnectedAccount, trigger: str) -> dict[str, Any]:
        return {"connector": account.connector, "account_id": account.id, "trigger": trigger}

    def _settle(self, account_id: str, done: asyncio.Future[CredentialSnapshot | None]) -> None:
        if self._inflight.get(account_id) is done:
            del self._inflight[account_id]
        if not done.cancelled():
            done.exception()  # retrieved here so a refresh nobody waited for does not warn at shutdown

    # ---- doing --------------------------------------------------------------------------------------
    async def _refresh_once_per_grant(self, account: ConnectedAccount, stale_version: int, trigger: str) -> CredentialSnapshot:
        connector = self.connectors[account.connector]
        lease_for = timedelta(seconds=self.settings.lease_seconds)
        # A live owner holds the lease at most lease_max_seconds; a dead one's runs out within lease_seconds.
        give_up_at = time.monotonic() + self.settings.lease_max_seconds + self.settings.lease_seconds
        delay = LOSER_POLL_FIRST_SECONDS
        waiting_since = time.time_ns()
        while True:
            row: CredentialSnapshot | None = await in_vault_thread(self.vault.credentials.read, account.id)
            if row is None:
                raise GrantGoneError("not_connected", "The account has no credentials yet.")
            if row.version != stale_version:
                self._remember(row)
                if self._still_good(row):
                    tracing.record_span("lease_wait", waiting_since, outcome="refreshed_elsewhere")
                    return row
                # Someone refreshed, but what they stored is itself (nearly) expired by now: refresh that one.
                stale_version = row.version
            if row.last_refresh_outcome == DEAD_OUTCOME:
                raise await self._already_dead(account)
            self._raise_if_cooling_down(row)
            now = utcnow()
            abandoned = row.lease_owner is not None and row.lease_until is not None and row.lease_until < now
            if await in_vault_thread(self.vault.credentials.try_lease, account.id, row.version, self.owner, lease_for):
                break
            if time.monotonic() > give_up_at:
                raise UpstreamCallError(
                    "refresh_in_progress", "Another worker is refreshing this grant and has not finished.", retryable=True
                )
            # Losers poll the row until the winner's version lands, and look again the moment a lease runs out
            # (its owner stopped renewing it: it died), so a takeover is not late by a whole poll interval.
            wait = delay
            if row.lease_until is not None:
                wait = min(wait, max(LOSER_POLL_FIRST_SECONDS, (row.lease_until - now).total_seconds()))
            await asyncio.sleep(wait)
            delay = min(delay * 1.6, LOSER_POLL_MAX_SECONDS)
        tracing.record_span("lease_wait", waiting_since, outcome="leased")
        try:  # a failure released between our read and our lease is seen here, before any token request
            latest = await in_vault_thread(self.vault.credentials.read, account.id)
            self._raise_if_cooling_down(latest or row)
        except UpstreamCallError:
            await in_vault_thread(self.vault.credentials.drop_lease, account.id, row.version, self.owner)
            raise
        # The previous attempt may have rotated the refresh token without storing the answer.
        interrupted = abandoned or row.last_refresh_outcome in UNCERTAIN_OUTCOMES
        try:
            return await self._refresh_holding_lease(account, connector, row, trigger, interrupted)
        except (GrantGoneError, AdminActionRequiredError, UpstreamCallError):
            raise
        except BaseException:
            # A bug or a cancellation while holding the lease: give it back rather than make every other caller
            # wait for it to expire, and say the answer may be lost (the provider may have rotated).
            with anyio.CancelScope(shield=True):
                await in_vault_thread(
                    self.vault.credentials.release_lease, account.id, self.owner, outcome=RefreshOutcome.AMBIGUOUS
                )
            raise

    async def _refresh_holding_lease(
        self, account: ConnectedAccount, connector: Connector, row: CredentialSnapshot, trigger: str, interrupted: bool
    ) -> CredentialSnapshot:
        now = utcnow()
        if row.refresh_token is None:
            # A rotating provider's answer without a successor is recorded as such (see `_answer_to_store`).
            missing = row.last_refresh_outcome == RefreshOutcome.REFRESH_TOKEN_MISSING
            return await self._grant_dead(account, row, "refresh_token_missing" if missing else "access_token_expired", trigger)
        if row.refresh_expires_at is not None and now >= row.refresh_expires_at:
            return await self._grant_dead(account, row, "refresh_token_expired", trigger)
        if not connector.configured:
            await self._release_as_failed(account, row)
            raise AdminActionRequiredError("client_not_configured", connector.missing_client or "")
        await self.events.record(EventKind.REFRESH_ATTEMPTED, account, trigger=trigger, version=row.version)
        crash_point("before_provider_call")
        # Lifetimes count from when we asked, not from when a (slow) answer arrived: never later than the provider's.
        requested_at = self.clock()
        try:
            async with self._lease_heartbeat(account, row.version):
                grant = await refresh_grant(connector, row.refresh_token, self.settings.refresh_timeout_seconds)
        except TokenEndpointError as error:
            return await self._refresh_refused(account, row, trigger, interrupted, error)
        crash_point("after_provider_rotated")
        # From here the provider may have rotated: store what it answered before anything else can fail.
        write, outcome = self._answer_to_store(connector, grant, row, requested_at)
        try:
            committed = await in_vault_thread(
                self.vault.credentials.commit_refresh, account.id, self.owner, row.version, write, outcome=outcome
            )
        except Exception:
            committed = None
        else:
            crash_point("after_commit")
        if committed is None:
            # Fail closed: the provider rotated, but the new tokens are not safely stored, so nobody may use them.
            await self.events.record(EventKind.REFRESH_COMMIT_FAILED, account, severity=Severity.CRITICAL, trigger=trigger)
            raise UpstreamCallError("refresh_not_stored", "A refreshed token could not be stored safely.", retryable=True)
        self._remember(committed)
        if grant.defect is not None:
            await self.events.record(
                EventKind.REFRESH_ANSWER_DEFECTIVE,
                account,
                severity=Severity.ERROR,
                trigger=trigger,
                defect=grant.defect,
                version=committed.version,
            )
            if committed.refresh_token is None:
                # Works until its access token expires, then needs its user: listed and offered a link as such.
                await in_vault_thread(self.vault.accounts.set_status, account.id, AccountStatus.ACTIVE, NO_REFRESH_TOKEN)
            if grant.access_token is None:
                raise UpstreamCallError(
                    "token_response_unusable",
                    f"{connector.spec.display_name} answered the refresh "
                    "with an unusable access token; its new refresh token was kept.",
                    retryable=True,
                )
        else:
            recovered: dict[str, Any] = {"after_failures": row.consecutive_failures} if row.consecutive_failures else {}
            await self.events.record(
                EventKind.REFRESH_SUCCEEDED, account, trigger=trigger, version=committed.version, **recovered
            )
        return committed

    def _answer_to_store(
        self, connector: Connector, grant: TokenGrant, row: CredentialSnapshot, issued_at: datetime
    ) -> tuple[CredentialWrite, RefreshOutcome]:
        """The row a token answer becomes, and its outcome. An answer whose access token is unusable still carries
        the grant's only live refresh token: that is stored beside the previous access token, retried later."""
        fraction, listeners = self.settings.refresh_at_fraction, self.due_listeners
        if grant.access_token is not None:
            write = credential_write(connector, grant, issued_at, refresh_at_fraction=fraction, due_listeners=listeners)
            return write, RefreshOutcome(grant.defect) if grant.defect else RefreshOutcome.OK
        kept = credential_write(
            connector,
            dataclasses.replace(grant, access_token=row.access_token),
            issued_at,
            refresh_at_fraction=fraction,
            due_listeners=listeners,
        )
        return dataclasses.replace(
            kept, access_expires_at=row.access_expires_at, refresh_due_at=self._retry_at(row)
        ), RefreshOutcome(grant.defect or RefreshOutcome.DEFECTIVE)

    @contextlib.asynccontextmanager
    async def _lease_heartbeat(self, account: ConnectedAccount, version: int) -> AsyncIterator[None]:
        """Keep the lease while the token request is in flight: renewed every third of `lease_seconds`, never past
        `lease_max_seconds` from now (the request's deadline is shorter than that, so it ends first)."""
        not_after = utcnow() + timedelta(seconds=self.settings.lease_max_seconds)
        task = asyncio.ensure_future(self._renew_lease_until(account, version, not_after))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_lease_until(self, account: ConnectedAccount, version: int, not_after: datetime) -> None:
        lease_for = timedelta(seconds=self.settings.lease_seconds)
        while True:
            await asyncio.sleep(self.settings.lease_seconds / HEARTBEATS_PER_LEASE)
            if utcnow() >= not_after:
                return
            try:
                held = await in_vault_thread(
                    self.vault.credentials.renew_lease, account.id, version, self.owner, lease_for, not_after
                )
            except Exception:
                # A database hiccup: the next beat tries again (the lease still has two thirds of its time).
                self.log.warning("lease_renewal_failed", account=account.display_name, exc_info=True)
                continue
            if not held:
                # Only a takeover after missed renewals gets here; the commit's compare-and-set will refuse ours.
                self.log.warning("lease_lost_in_flight", account=account.display_name, version=version)
                return

    async def _refresh_refused(
        self,
        account: ConnectedAccount,
        row: CredentialSnapshot,
        trigger: str,
        interrupted: bool,
        error: TokenEndpointError,
    ) -> CredentialSnapshot:
        if error.verdict is TokenVerdict.REJECTED:
            latest = await in_vault_thread(self.vault.credentials.read, account.id)
            if latest is not None and latest.version != row.version:
                self._remember(latest)
                return latest
            reason = "refresh_interrupted" if interrupted else "refresh_token_revoked"
            return await self._grant_dead(account, row, reason, trigger, provider_error=error.error)
        if error.verdict is TokenVerdict.CLIENT_MISCONFIGURED:
            await self._release_as_failed(account, row)
            await self.events.record(
                EventKind.REFRESH_FAILED, account, severity=Severity.CRITICAL, trigger=trigger, provider_error=error.error
            )
            raise AdminActionRequiredError(
                "client_credentials_rejected", "The provider rejected this server's OAuth client credentials."
            )
        # Inside the advisory window the current token stays in use; the next attempt comes at `retry_at`.
        outcome = RefreshOutcome.AMBIGUOUS if error.maybe_applied else RefreshOutcome.FAILED
        retry_at = self._retry_at(row)
        await in_vault_thread(self.vault.credentials.release_lease, account.id, self.owner, outcome=outcome, retry_at=retry_at)
        self.forget(account.id)
        await self.events.record(
            EventKind.REFRESH_FAILED,
            account,
            severity=Severity.WARNING,
            trigger=trigger,
            provider_error=error.error,
            outcome=outcome,
            retry_at=retry_at.isoformat(),
        )
        raise UpstreamCallError(
            "token_endpoint_unavailable",
            "The provider's token endpoint is not answering.",
            retryable=True,
            retry_after=(retry_at - utcnow()).total_seconds(),
        )

    async def _grant_dead(
        self, account: ConnectedAccount, row: CredentialSnapshot, reason: str, trigger: str, **detail: Any
    ) -> CredentialSnapshot:
        marked = await in_vault_thread(
            self.vault.credentials.mark_grant_dead, account.id, self.owner, row.version, AccountStatus.REAUTH_REQUIRED, reason
        )
        self.forget(account.id)
        if not marked:
            # We no longer hold the lease at this version: whoever does decides (or already decided).
            latest = await in_vault_thread(self.vault.credentials.read, account.id)
            if latest is not None and latest.version != row.version:
                self._remember(latest)
                return latest
            if latest is not None and latest.last_refresh_outcome == DEAD_OUTCOME:
                raise await self._already_dead(account)
            raise UpstreamCallError("refresh_in_progress", "Another worker is refreshing this grant.", retryable=True)
        gone = await self._already_dead(account)  # the account's first terminal reason, which may predate ours
        await self.events.record(
            EventKind.REFRESH_FAILED, account, severity=Severity.ERROR, trigger=trigger, reason=reason, **detail
        )
        if gone.reason == reason:
            await self.events.record(EventKind.REAUTH_REQUIRED, account, severity=Severity.CRITICAL, reason=reason)
        raise gone

    async def _already_dead(self, account: ConnectedAccount) -> GrantGoneError:
        """The failure for a grant the vault already knows is dead, with the reason it was first given."""
        stored = await in_vault_thread(self.vault.accounts.get, account.id)
        return GrantGoneError(stored.status_reason or "reauth_required", "The grant can no longer be refreshed.")

    # ---- timings ------------------------------------------------------------------------------------
    def _still_good(self, row: CredentialSnapshot) -> bool:
        """Whether a token another worker stored is fit to hand out now (outside the mandatory window)."""
        if row.access_expires_at is None:
            return True
        return utcnow() < row.access_expires_at - self._mandatory_window(row)

    async def _release_as_failed(self, account: ConnectedAccount, row: CredentialSnapshot) -> None:
        """Give the lease back with the refresh failed: due again only at the retry time, for every worker."""
        await in_vault_thread(
            self.vault.credentials.release_lease,
            account.id,
            self.owner,
            outcome=RefreshOutcome.FAILED,
            retry_at=self._retry_at(row),
        )

    def _mandatory_window(self, snapshot: CredentialSnapshot) -> timedelta:
        window = self.settings.mandatory_refresh_seconds
        if snapshot.access_expires_at is not None:
            lifetime = (snapshot.access_expires_at - snapshot.issued_at).total_seconds()
            if lifetime > 0:
                window = min(window, lifetime * MANDATORY_WINDOW_FRACTION)
        return timedelta(seconds=window)

    def _raise_if_cooling_down(self, row: CredentialSnapshot) -> None:
        """After a failed refresh its row is due again only at the retry time (`_retry_at`); until then every
        caller in every worker gets the recorded failure instead of asking a failing token endpoint again."""
        if row.last_refresh_outcome not in COOLDOWN_OUTCOMES or row.refresh_due_at is None:
            return
        wait = (row.refresh_due_at - utcnow()).total_seconds()
        if wait > 0:
            raise UpstreamCallError(
                "token_endpoint_unavailable",
                "The provider's token endpoint failed a moment ago; grantkeeper waits before asking it again.",
                retryable=True,
                retry_after=wait,
            )

    @staticmethod
    def _retry_at(row: CredentialSnapshot) -> datetime:
        """When a failed refresh is tried again: 5 s, 10 s, 15 s … after each consecutive failure, at most 60 s."""
        return utcnow() + timedelta(seconds=min(60.0, 5.0 * (1 + row.consecutive_failures)))

    async def wait_for_background(self) -> None:
        """Wait until every background refresh started so far has finished (tests and shutdown)."""
        while self._background:
            await asyncio.wait(list(self._background))

    async def aclose(self) -> None:
        await self._cache.aclose()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            try:
                await task
            except BaseException:
                pass
