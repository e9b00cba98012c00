"""The audit trail: who did what — administrative actions (links created, accounts removed, keys, disable/enable)
and tool calls (tool, caller, account, status, duration). Argument values and result bodies are never recorded:
only names, statuses and timings, so nothing secret can reach it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from server.monitoring.logging import get_logger
from server.vault import Vault
from server.vault.models import AuditEvent, LifecycleEvent

# Detail keys an audit row may carry; anything else given is dropped, so a careless caller cannot log a value.
ALLOWED_DETAIL = frozenset(
    {
        "tool",
        "via",
        "connector",
        "label",
        "reason",
        "key_id",
        "key_prefix",
        "admin",
        "outcome",
        "revocation",
        "link_id",
        "purpose",
        "session",
    }
)


class AuditTrail:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.log = get_logger("grantkeeper.audit")

    @staticmethod
    def _row(
        actor: str,
        action: str,
        *,
        account_id: str | None = None,
        target: str | None = None,
        status: str | None = None,
        duration_ms: int | None = None,
        **detail: Any,
    ) -> AuditEvent:
        kept = {key: str(value)[:200] for key, value in detail.items() if key in ALLOWED_DETAIL and value is not None}
        return AuditEvent(
            actor=actor[:400],
            action=action[:64],
            account_id=account_id,
            target=target[:400] if target else None,
            status=status,
            duration_ms=duration_ms,
            detail=kept,
        )

    def _write(self, rows: list[AuditEvent]) -> None:
        with Session(self.engine) as session:
            session.add_all(rows)
            session.commit()

    def record_sync(self, actor: str, action: str, **fields: Any) -> None:
        self._write([self._row(actor, action, **fields)])

    async def record(self, actor: str, action: str, **fields: Any) -> None:
        """An administrative action: written before the caller goes on."""
        row = self._row(actor, action, **fields)
        await anyio.to_thread.run_sync(self._write, [row])

    async def record_tool_call(self, actor: str, **fields: Any) -> None:
        """A tool call's row, written before the answer goes back (so what an agent was told is on record); a failed
        write is logged and never fails the call."""
        try:
            await self.record(actor, "tool_call", **fields)
        except Exception:
            self.log.warning("audit_write_failed", action="tool_call", exc_info=True)

    def rows(
        self,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        after_id: int | None = None,
        limit: int = 200,
    ) -> list[AuditEvent]:
        """Newest first (oldest first when following with `after_id`)."""
        with Session(self.engine, expire_on_commit=False) as session:
            statement = select(AuditEvent)
            if since is not None:
                statement = statement.where(AuditEvent.at >= since)
            if actor is not None:
                statement = statement.where(AuditEvent.actor == actor)
            if action is not None:
                statement = statement.where(AuditEvent.action == action)
            if after_id is not None:
                statement = statement.where(col(AuditEvent.id) > after_id).order_by(col(AuditEvent.id))
            else:
                statement = statement.order_by(col(AuditEvent.id).desc())
            return list(session.exec(statement.limit(limit)))


def prune_history(vault: Vault, *, audit_before: datetime, events_before: datetime, batch: int = 1000) -> dict[str, int]:
    """Delete audit rows and lifecycle events older than their retention, in batches (no long lock)."""
    counts = {"audit_events": 0, "lifecycle_events": 0}
    for name, table, cutoff in (("audit_events", AuditEvent, audit_before), ("lifecycle_events", LifecycleEvent, events_before)):
        while True:
            with Session(vault.engine) as session:
                ids = list(session.exec(select(table.id).where(table.at < cutoff).limit(batch)))
                if ids:
                    # the connection's result says how many rows went (the ORM session's result type does not)
                    counts[name] += session.connection().execute(delete(table).where(col(table.id).in_(ids))).rowcount
                    session.commit()
            if len(ids) < batch:
                break
    return counts


def retention_cutoffs(now: datetime, audit_days: float, event_days: float) -> tuple[datetime, datetime]:
    return now - timedelta(days=audit_days), now - timedelta(days=event_days)


def actors(rows: Iterable[AuditEvent]) -> list[str]:
    return sorted({row.actor for row in rows})
