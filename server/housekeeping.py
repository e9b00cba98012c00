"""Clean-up every `serve` runs in the background: magic-link rows that can no longer be used are deleted once
past their retention (a link is minted for every `reauth_required` answer, so without this they only grow), and
so are spent identity rows (server/identity/housekeeping.py), and audit rows and lifecycle events once older than
GRANTKEEPER_AUDIT_RETENTION_DAYS / _EVENT_RETENTION_DAYS.

Any number of workers may run it at once: deleting rows another worker already deleted is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import anyio

from server.identity.housekeeping import prune_identity_rows
from server.monitoring.audit import prune_history, retention_cutoffs
from server.monitoring.logging import get_logger
from server.settings import Settings
from server.vault import Vault
from server.vault.models import utcnow


class Housekeeper:
    def __init__(
        self,
        settings: Settings,
        vault: Vault,
        *,
        clock: Callable[[], datetime] = utcnow,
        after_pass: Callable[[int], None] | None = None,
    ):
        self.settings = settings
        self.vault = vault
        self.clock = clock
        self.after_pass = after_pass  # told how many rows each pass pruned (tests wait on it instead of sleeping)
        self.log = get_logger("grantkeeper.housekeeping")

    def prune_once(self) -> int:
        """Prune now; blocking. Returns the number of rows deleted (magic links, then identity rows)."""
        now, retention = self.clock(), timedelta(seconds=self.settings.magic_link_retention_seconds)
        links = self.vault.links.prune(
            now=now, retention=retention, flow_ttl=timedelta(seconds=self.settings.magic_link_ttl_seconds)
        )
        client_retention = timedelta(days=self.settings.mcp_client_retention_days)
        return links + prune_identity_rows(self.vault.engine, now=now, retention=retention, client_retention=client_retention)

    def prune_history_once(self) -> dict[str, int]:
        """Prune audit rows and lifecycle events past their retention now; blocking. Returns counts per table."""
        audit_before, events_before = retention_cutoffs(
            self.clock(), self.settings.audit_retention_days, self.settings.event_retention_days
        )
        return prune_history(self.vault, audit_before=audit_before, events_before=events_before)

    async def run(self) -> None:
        """A pass at start, then one every `housekeeping_interval_seconds`, until cancelled. A failed pass (the
        database away) is logged and tried again next time; it never stops the server."""
        while True:
            try:
                pruned = await anyio.to_thread.run_sync(self.prune_once)
                history = await anyio.to_thread.run_sync(self.prune_history_once)
                if any(history.values()):
                    self.log.info("history_pruned", **history)
            except Exception:
                self.log.warning("housekeeping_pass_failed", exc_info=True)
                pruned = 0
            else:
                if pruned:
                    self.log.info("magic_links_pruned", count=pruned)
            if self.after_pass is not None:
                self.after_pass(pruned)
            await anyio.sleep(self.settings.housekeeping_interval_seconds)
