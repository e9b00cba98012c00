"""Alerts from lifecycle events: one failed refresh is a warning, three in a row an alert, a grant that needs
re-authorization is critical — one alert per incident, to the log and optionally a webhook."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2

from server.monitoring.logging import get_logger

FAILURES_BEFORE_ALERT = 3
WEBHOOK_TIMEOUT_SECONDS = 5.0
# Events that open an incident of their own at once, with the alert's severity.
IMMEDIATE = {
    "reauth_required": "critical",
    "vault_integrity_failed": "critical",
    "refresh_commit_failed": "critical",
    "status_changed": None,  # only when it says admin_action_required, see below
}


@dataclass
class _AccountState:
    consecutive_failures: int = 0
    open_incidents: set[str] = field(default_factory=set)


class AlertPolicy:
    """Turns the event stream into alerts. State is per process: with several workers, each may raise the same
    incident once (the webhook receiver should group by `incident`)."""

    def __init__(self, webhook_url: str | None = None):
        self.webhook_url = webhook_url
        self.log = get_logger("grantkeeper.alerts")
        self._accounts: dict[str, _AccountState] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self.sent: list[dict[str, Any]] = []

    def observe(self, kind: str, account_name: str | None, detail: dict[str, Any]) -> None:
        if account_name is None:
            return
        state = self._accounts.setdefault(account_name, _AccountState())
        if kind == "refresh_failed":
            state.consecutive_failures += 1
            if state.consecutive_failures >= FAILURES_BEFORE_ALERT:
                self._open(state, account_name, "refresh_failing", "error",
                           f"{state.consecutive_failures} refreshes in a row failed", detail)
        elif kind in ("refresh_succeeded", "reauthorized"):
            state.consecutive_failures = 0
            for incident in sorted(state.open_incidents):
                self._send(account_name, incident, "resolved", f"{incident} resolved by {kind}", {})
            state.open_incidents.clear()
        elif kind == "status_changed" and detail.get("status") == "admin_action_required":
            self._open(state, account_name, "admin_action_required", "error", "an administrator must act", detail)
        elif kind == "status_changed" and detail.get("status") == "active":
            for incident in sorted(state.open_incidents):
                self._send(account_name, incident, "resolved", "the account works again", {})
            state.open_incidents.clear()
        elif IMMEDIATE.get(kind):
            self._open(state, account_name, kind, IMMEDIATE[kind], kind.replace("_", " "), detail)

    def _open(self, state: _AccountState, account: str, incident: str, severity: str, summary: str,
              detail: dict[str, Any]) -> None:
        if incident in state.open_incidents:
            return
        state.open_incidents.add(incident)
        self._send(account, incident, severity, summary, detail)

    def _send(self, account: str, incident: str, severity: str, summary: str, detail: dict[str, Any]) -> None:
        alert = {"alert": incident, "severity": severity, "account": account, "summary": summary,
                 "reason": detail.get("reason"), "at": datetime.now(UTC).isoformat()}
        self.sent.append(alert)
        self.log.warning("alert", **alert)
        if self.webhook_url:
            try:
                task = asyncio.get_running_loop().create_task(self._deliver(alert))
            except RuntimeError:  # no event loop (a CLI command): the log line is the alert
                return
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, alert: dict[str, Any]) -> None:
        try:
            async with httpx2.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
                response = await client.post(self.webhook_url, json=alert)
                response.raise_for_status()
        except httpx2.HTTPError as exc:
            self.log.warning("alert_webhook_failed", alert=alert["alert"], error=type(exc).__name__)

    async def drain(self) -> None:
        """Wait for webhook deliveries in flight (shutdown, tests)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)
