"""Lifecycle events: one log line and one `lifecycle_event` row each, so operators can follow every grant; the
ones receivers subscribe to are queued as signed webhooks in the same transaction (server/vault/outbox.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from server.monitoring.alerts import AlertPolicy
from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.logging import get_logger
from server.monitoring.metrics import Metrics
from server.monitoring.webhook_events import lifecycle_webhook
from server.vault import ConnectedAccount, Vault


class EventRecorder:
    def __init__(self, vault: Vault, alerts: AlertPolicy | None = None, metrics: Metrics | None = None):
        self.vault = vault
        self.alerts = alerts or AlertPolicy(vault)
        self.metrics = metrics or Metrics()
        self.log = get_logger("grantkeeper.events")
        # Called (on the event loop) after each event that queued a webhook: the deliverer wakes for it.
        self.webhook_listeners: list[Callable[[], None]] = []

    async def record(
        self, kind: EventKind, account: ConnectedAccount | None, *, severity: Severity = Severity.INFO, **detail: Any
    ) -> None:
        queued = await anyio.to_thread.run_sync(self.record_sync, kind, account, severity, detail)
        queued = await self.alerts.observe(kind, account.display_name if account else None, detail, subject=account) or queued
        if queued:
            for listener in self.webhook_listeners:
                listener()

    def record_sync(self, kind: EventKind, account: ConnectedAccount | None, severity: Severity, detail: dict[str, Any]) -> bool:
        """Log and store the event; True when it queued a webhook."""
        kind, severity = EventKind(kind), Severity(severity)  # also when an untyped caller passed the plain string
        context = {"account": account.display_name, "connector": account.connector} if account else {}
        self.metrics.record_event(kind.value, account.connector if account else "")
        self.log.log(severity.log_level, kind.value, severity=severity.value, **context, **detail)
        webhook = lifecycle_webhook(kind.value, account, severity.value, detail)
        self.vault.events.record(
            kind.value, account_id=account.id if account else None, severity=severity.value, webhook=webhook, **context, **detail
        )
        return webhook is not None
