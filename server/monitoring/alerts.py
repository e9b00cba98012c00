"""Alerts from lifecycle events: one failed refresh is a warning, three in a row an alert, a grant that needs
re-authorization is critical — one alert per incident across the whole fleet, to the log and optionally a webhook.

Which worker alerts is decided in the database (`alert_incident`: opening an incident is an insert that exactly one
worker wins, resolving it a delete that exactly one worker wins), so N workers do not send N alerts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx2

from server.monitoring.logging import get_logger
from server.monitoring.webhook_events import alert_webhook
from server.vault import ConnectedAccount, Vault

FAILURES_BEFORE_ALERT = 3
WEBHOOK_TIMEOUT_SECONDS = 5.0
# Events that open an incident at once, with the alert's severity.
IMMEDIATE = {
    "reauth_required": "critical",
    "vault_integrity_failed": "critical",
    "refresh_commit_failed": "critical",
    # Connected without a refresh token: it works now, but will need its user at expiry.
    "refresh_token_missing": "warning",
    "reconnect_due": "warning",
}
RECOVERED = {"refresh_succeeded", "reauthorized"}


class AlertPolicy:
    def __init__(self, vault: Vault, webhook_url: str | None = None):
        self.vault = vault
        self.webhook_url = webhook_url
        self.log = get_logger("grantkeeper.alerts")
        # Failures in a row are counted per process: the three-in-a-row rule is about this worker's attempts.
        self._failures: dict[str, int] = {}
        self._deliveries: set[asyncio.Task[None]] = set()

    async def observe(
        self, kind: str, account: str | None, detail: dict[str, Any], subject: ConnectedAccount | None = None
    ) -> bool:
        """Open or resolve the account's incident for this event; True when that queued a signed webhook
        (`alert.opened` / `alert.resolved`, in the transaction that opened or closed the incident)."""
        if account is None:
            return False
        opened: tuple[str, str, str] | None = None
        if kind == "refresh_failed":
            self._failures[account] = self._failures.get(account, 0) + 1
            if self._failures[account] >= FAILURES_BEFORE_ALERT:
                opened = ("refresh_failing", "error", f"{self._failures[account]} refreshes in a row failed")
        elif kind in IMMEDIATE:
            opened = (kind, IMMEDIATE[kind], kind.replace("_", " "))
        elif kind == "status_changed" and detail.get("status") == "admin_action_required":
            opened = ("admin_action_required", "error", "an administrator must act")
        elif kind in RECOVERED or (kind == "status_changed" and detail.get("status") == "active"):
            self._failures.pop(account, None)
            summary = f"resolved ({kind})"

            def resolved(incident: str) -> Any:
                return alert_webhook(False, subject, account, incident, "resolved", f"{incident} {summary}")

            closed = await anyio.to_thread.run_sync(self.vault.incidents.close_all, account, resolved)
            for incident in closed:
                self._send(account, incident, "resolved", f"{incident} {summary}", {})
            return bool(closed)
        if opened is not None:
            incident, severity, summary = opened
            webhook = alert_webhook(True, subject, account, incident, severity, summary, detail.get("reason"))
            if await anyio.to_thread.run_sync(self.vault.incidents.open, account, incident, severity, webhook):
                self._send(account, incident, severity, summary, detail)
                return True
        return False

    def _send(self, account: str, incident: str, severity: str, summary: str, detail: dict[str, Any]) -> None:
        alert = {
            "alert": incident,
            "severity": severity,
            "account": account,
            "summary": summary,
            "reason": detail.get("reason"),
            "at": datetime.now(UTC).isoformat(),
        }
        self.log.warning("alert", **alert)
        if self.webhook_url:
            task = asyncio.get_running_loop().create_task(self._deliver(self.webhook_url, alert))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, url: str, alert: dict[str, Any]) -> None:
        try:
            async with httpx2.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
                response = await client.post(url, json=alert)
                response.raise_for_status()
        except httpx2.HTTPError as exc:
            self.log.warning("alert_webhook_failed", alert=alert["alert"], error=type(exc).__name__)

    async def drain(self) -> None:
        """Wait for webhook deliveries in flight (shutdown, tests)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)
