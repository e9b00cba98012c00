"""Lifecycle events: one log line and one `lifecycle_event` row each, so operators can follow every grant."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from server.monitoring.alerts import AlertPolicy
from server.monitoring.logging import get_logger
from server.monitoring.metrics import LIFECYCLE_EVENTS
from server.vault import ConnectedAccount, Vault

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


class EventRecorder:
    def __init__(self, vault: Vault, alerts: AlertPolicy | None = None):
        self.vault = vault
        self.alerts = alerts or AlertPolicy(vault)
        self.log = get_logger("grantkeeper.events")

    async def record(self, kind: str, account: ConnectedAccount | None, severity: str = "info", **detail: Any) -> None:
        await anyio.to_thread.run_sync(self.record_sync, kind, account, severity, detail)
        await self.alerts.observe(kind, account.display_name if account else None, detail)

    def record_sync(self, kind: str, account: ConnectedAccount | None, severity: str, detail: dict[str, Any]) -> None:
        context = {"account": account.display_name, "connector": account.connector} if account else {}
        LIFECYCLE_EVENTS.labels(kind, account.connector if account else "").inc()
        self.log.log(LEVELS.get(severity, logging.INFO), kind, severity=severity, **context, **detail)
        self.vault.record_event(kind, account_id=account.id if account else None, severity=severity,
                                **context, **detail)
