"""`WebhookDeliverer`: sends the outbox (server/vault/outbox.py) to its endpoints as Standard Webhooks, in every
worker of a fleet, beside the refresh scheduler.

Each message is signed with its endpoint's secret (`webhook-id`, `webhook-timestamp`, `webhook-signature` over
the exact body) and sent at least once: a failed attempt is retried with exponential backoff and jitter until the
retry budget is spent, then the message is dead-lettered (`grantkeeper webhooks replay` revives it). Every
attempt has a total deadline, reads at most `RESPONSE_MAX_BYTES` of the answer, follows no redirect, and goes
only to https (plain http only on loopback). Logs name the endpoint by id, never its URL or secret.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from standardwebhooks import Webhook

from server.lifecycle.crashpoints import crash_point
from server.lifecycle.tokens import worker_id
from server.monitoring.logging import get_logger
from server.settings import ConfigError, Settings, check_base_url
from server.vault import Vault
from server.vault.models import utcnow
from server.vault.outbox import ClaimedMessage

RESPONSE_MAX_BYTES = 64 * 1024
BATCH_SIZE = 20
CONTENDED_RETRY_SECONDS = 0.25  # due messages that another worker was just claiming: look again after this
CRASH_BEFORE_SEND = "before_webhook_send"  # GRANTKEEPER_TEST_CRASH_AT step (tests only)


class DeliveryFailed(Exception):
    """An attempt that did not end in a 2xx answer; `reason` is short and safe to store and log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_webhook_url(url: str) -> str:
    """https, or plain http on loopback only; no credentials in the URL. Raises ConfigError otherwise."""
    if len(url) > 2000:
        raise ConfigError("the webhook URL is longer than 2000 characters")
    check_base_url(url, "the webhook URL")
    return url


def printable_url(url: str) -> str:
    """The URL without its query (receivers sometimes put a token there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def message_body(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def signed_headers(secret: str, message_id: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "content-type": "application/json",
    }


async def send_signed(
    http: httpx2.AsyncClient, url: str, secret: str, message_id: str, body: str, *, at: datetime, timeout: float
) -> int:
    """One attempt; returns the 2xx status or raises DeliveryFailed."""
    try:
        check_webhook_url(url)
    except ConfigError:
        raise DeliveryFailed("url_refused") from None
    try:
        with anyio.fail_after(timeout):
            async with http.stream(
                "POST", url, content=body.encode(), headers=signed_headers(secret, message_id, body, at), follow_redirects=False
            ) as response:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read > RESPONSE_MAX_BYTES:
                        break  # the answer's body means nothing to us; only its status does
                status = response.status_code
    except TimeoutError:
        raise DeliveryFailed("timeout") from None
    except (httpx2.ConnectError, httpx2.ConnectTimeout):
        raise DeliveryFailed("unreachable") from None
    except httpx2.TimeoutException:
        raise DeliveryFailed("timeout") from None
    except httpx2.HTTPError as exc:
        raise DeliveryFailed(f"transport_{type(exc).__name__}") from None
    if 200 <= status < 300:
        return status
    raise DeliveryFailed(f"redirect_{status}" if 300 <= status < 400 else f"http_{status}")


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    dead: int = 0


class WebhookDeliverer:
    def __init__(self, settings: Settings, vault: Vault, *, clock: Callable[[], datetime] = utcnow, owner: str | None = None):
        self.settings = settings
        self.vault = vault
        self.clock = clock
        self.owner = owner or worker_id()
        self.stats = DeliveryStats()
        self.log = get_logger("grantkeeper.webhooks")
        self._wake = anyio.Event()

    @property
    def lease_for(self) -> timedelta:
        # Longer than an attempt can take, so a live worker never loses the lease mid-delivery.
        return timedelta(seconds=2 * self.settings.webhook_timeout_seconds + 1)

    def nudge(self) -> None:
        """A message was queued in this process: look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with httpx2.AsyncClient(follow_redirects=False, headers={"User-Agent": "grantkeeper-webhooks/0.1"}) as http:
            while True:
                self._wake = anyio.Event()
                try:
                    delivered_some = await self.deliver_due(http)
                    wait = 0.0 if delivered_some else await self._idle_seconds()
                except Exception:
                    self.log.error("webhook_pass_failed", exc_info=True)
                    wait = self.settings.webhook_poll_seconds
                if wait > 0:
                    with anyio.move_on_after(wait):
                        await self._wake.wait()

    async def run_until_idle(self) -> DeliveryStats:
        """Deliver until no message is pending (tests): waits out backoffs and other workers' leases."""
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            while await self.deliver_due(http) or await self._pending():
                with anyio.move_on_after(await self._idle_seconds()):
                    await self._wake.wait()
                self._wake = anyio.Event()
        return self.stats

    async def deliver_due(self, http: httpx2.AsyncClient) -> bool:
        """Claim one batch and deliver it (messages of different accounts in parallel). True when any was claimed."""
        claimed: list[ClaimedMessage] = await anyio.to_thread.run_sync(
            self.vault.outbox.claim_due, self.owner, self.clock(), BATCH_SIZE, self.lease_for
        )
        async with anyio.create_task_group() as group:
            for message in claimed:
                group.start_soon(self._deliver, http, message)
        return bool(claimed)

    async def _deliver(self, http: httpx2.AsyncClient, message: ClaimedMessage) -> None:
        crash_point(CRASH_BEFORE_SEND)
        context = {
            "webhook_id": message.message_id,
            "endpoint": message.endpoint_id,
            "type": message.event_type,
            "attempt": message.attempts + 1,
        }
        try:
            await send_signed(
                http,
                message.url,
                message.secret,
                message.message_id,
                message_body(message.payload),
                at=self.clock(),
                timeout=self.settings.webhook_timeout_seconds,
            )
        except DeliveryFailed as failure:
            retry_at = self._retry_at(message.attempts + 1)
            await anyio.to_thread.run_sync(self.vault.outbox.mark_failed, message.id, self.owner, failure.reason, retry_at)
            if retry_at is None:
                self.stats.dead += 1
                self.log.error("webhook_dead_lettered", reason=failure.reason, **context)
            else:
                self.stats.failed += 1
                self.log.warning("webhook_attempt_failed", reason=failure.reason, retry_at=retry_at.isoformat(), **context)
            return
        await anyio.to_thread.run_sync(self.vault.outbox.mark_delivered, message.id, self.owner, self.clock())
        self.stats.delivered += 1
        self.log.info("webhook_delivered", **context)

    def _retry_at(self, attempts: int) -> datetime | None:
        """Exponential backoff with jitter (half to all of the step); None once the retry budget is spent."""
        settings = self.settings
        if attempts >= settings.webhook_max_attempts:
            return None
        step = min(settings.webhook_backoff_max_seconds, settings.webhook_backoff_initial_seconds * 2 ** (attempts - 1))
        return self.clock() + timedelta(seconds=random.uniform(step / 2, step))

    async def _idle_seconds(self) -> float:
        now = self.clock()
        next_due = await anyio.to_thread.run_sync(self.vault.outbox.next_due, now)
        poll = self.settings.webhook_poll_seconds
        if next_due is None:
            return poll
        until = (next_due - now).total_seconds()
        return min(poll, until if until > 0 else CONTENDED_RETRY_SECONDS)

    async def _pending(self) -> bool:
        return bool(await anyio.to_thread.run_sync(lambda: self.vault.outbox.messages(status="pending", limit=1)))
