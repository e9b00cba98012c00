"""The audit trail: who did what — administrative actions (links created, accounts removed, keys, disable/enable)
and tool calls (tool, caller, account, status, duration). Argument values and result bodies are never recorded:
only names, statuses and timings, so nothing secret can reach it.

A tool call's row is queued in memory and written off the answer's path, in batches, by a background task; an
administrative action's row is written (after every queued row, so the table keeps the order of events) before the
caller goes on. The queue is bounded: a row that does not fit is counted (`grantkeeper_audit_rows_dropped`) and
logged, never lost silently, and `aclose` writes what is queued at shutdown.

The writer hands a batch to the database driver in the driver's own form (`BatchInsert`): its CPU competes with the
event loop for the GIL, so it shows in tool-call latency (bench/audit_writes.py measures it)."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import anyio
from sqlalchemy import Connection, Dialect, Engine, Table, delete, insert
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from server.monitoring.logging import get_logger
from server.monitoring.metrics import Metrics
from server.vault import Vault
from server.vault.models import AuditEvent, LifecycleEvent, utcnow

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
# Tool-call rows waiting to be written; beyond this (the database refusing writes for a long while) rows are
# counted as dropped rather than held without bound.
MAX_QUEUED_ROWS = 10_000
# How long queued rows gather before one write takes them all: a write per batch of calls, not per call.
FLUSH_INTERVAL_SECONDS = 0.1
# After a failed write the wait before the next attempt doubles, up to this.
MAX_RETRY_WAIT_SECONDS = 5.0

Row = dict[str, Any]
# A tool call as recorded: when (the call's end, not the batch's write), who, what, and the fields as given. The
# writer makes it a row (cut, cleaned, filtered: `row_of`) on its own thread, off the answer's path.
Recorded = tuple[datetime, str, str, dict[str, Any]]
AUDIT_TABLE: Table = AuditEvent.__table__  # type: ignore[attr-defined]


def row_of(recorded: Recorded) -> Row:
    """The table row of what was recorded: each value cut to its column and made storable, and of the detail only
    the allowed keys (so a careless caller cannot log a value)."""
    at, actor, action, fields = recorded
    account_id, target, status = fields.get("account_id"), fields.get("target"), fields.get("status")
    detail = {key: storable(str(value), 200) for key, value in fields.items() if key in ALLOWED_DETAIL and value is not None}
    return {
        "at": at,
        "actor": storable(actor, 400),
        "action": storable(action, 64),
        "account_id": storable(account_id, 32) if account_id is not None else None,
        "target": storable(target, 400) if target else None,
        "status": storable(status, 32) if status is not None else None,
        "duration_ms": _integer_column(fields.get("duration_ms")),
        "detail": detail,
    }


def _integer_column(value: int | None) -> int | None:
    """A duration within the column's 32 bits (PostgreSQL refuses more): a row no write can store must not exist."""
    return None if value is None else max(-(2**31), min(int(value), 2**31 - 1))


def storable(text: str, limit: int) -> str:
    """`text` cut to its column's `limit`, in a form every backend stores: NUL (PostgreSQL's text refuses it) and
    lone surrogates (UTF-8 cannot encode them) replaced. A row that no write can store would stay at the head of
    the queue, refused batch after batch, until the queue filled and every later row was dropped."""
    text = text[:limit]
    if text.isascii() and "\x00" not in text:  # nearly always: a few C-speed checks
        return text
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


class BatchInsert:
    """Inserts a batch of audit rows for one dialect, storing what `connection.execute(insert(AuditEvent), rows)`
    stored, with less CPU: that call processes each row's parameters generically (SQLAlchemy's `construct_params`
    and per-row bookkeeping), and on PostgreSQL psycopg's executemany sends every row as a statement of its own.

    The columns' own bind processors (`UTCDateTime` to naive UTC in the dialect's form, JSON serialised as the
    column serialises it), obtained once, are applied in one loop — on the writer's thread, never the event loop's —
    and the batch goes to the driver in one call: on SQLite the executemany of the insert SQLAlchemy compiled for
    the dialect; on PostgreSQL psycopg's COPY (text format; the rows in order, so ids keep the order of events).
    bench/audit_writes.py compares the two."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        columns = [column for column in AUDIT_TABLE.columns if not column.primary_key]  # the id is the database's
        keys = [column.key for column in columns]
        self._values = itemgetter(*keys)
        self._processors = [
            (index, processor)
            for index, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]
        self._copy = dialect.name == "postgresql"
        if self._copy:
            quote = dialect.identifier_preparer
            names = ", ".join(quote.format_column(column) for column in columns)
            self.sql = f"COPY {quote.format_table(AUDIT_TABLE)} ({names}) FROM STDIN"
        else:
            compiled = insert(AUDIT_TABLE).compile(dialect=dialect, column_keys=keys, for_executemany=True)
            if compiled.positiontup != keys:
                raise ValueError(f"{dialect.name}: the audit insert's parameters are not positional in column order")
            self.sql = compiled.string

    def driver_rows(self, rows: Iterable[Row]) -> list[tuple[Any, ...]]:
        """Each row's values in column order, as the driver takes them."""
        converted = []
        for row in rows:
            values = list(self._values(row))
            for index, process in self._processors:
                values[index] = process(values[index])
            converted.append(tuple(values))
        return converted

    def __call__(self, connection: Connection, rows: Iterable[Row]) -> None:
        values = self.driver_rows(rows)
        if not self._copy:
            connection.exec_driver_sql(self.sql, values)
            return
        driver: Any = connection.connection.driver_connection  # psycopg's Connection
        error = self.dialect.loaded_dbapi.Error
        try:
            with driver.cursor() as cursor, cursor.copy(self.sql) as copy:
                for row in values:
                    copy.write_row(row)
        except error as exc:  # as SQLAlchemy's own statements raise it (callers, the CLI, know those)
            raise DBAPIError.instance(self.sql, None, exc, error, dialect=self.dialect) from exc


class AuditTrail:
    def __init__(
        self,
        engine: Engine,
        *,
        metrics: Metrics | None = None,
        max_queued: int = MAX_QUEUED_ROWS,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.engine = engine
        self.metrics = metrics
        self.max_queued = max_queued
        self.flush_interval = flush_interval
        self.clock = clock  # stamps each row when it is recorded
        self.dropped = 0  # rows never written: queue full, or still unwritable at shutdown
        self.log = get_logger("grantkeeper.audit")
        self._queued: deque[Recorded] = deque()
        self._queue_lock = threading.Lock()  # rows are queued on the event loop and taken by a writer thread
        self._write_lock = threading.Lock()  # one write at a time: rows reach the table in the order recorded
        self._writer: asyncio.Task[None] | None = None
        self._drop_reported = False  # a full queue is logged once until a write succeeds again
        self._batch_insert: BatchInsert | None = None  # made at the first write, when the dialect knows its server

    def _row(self, actor: str, action: str, **fields: Any) -> Row:
        return row_of((self.clock(), actor, action, fields))

    # ---- writing ------------------------------------------------------------------------------------------------
    def _insert(self, rows: list[Row]) -> None:
        with self.engine.begin() as connection:
            if self._batch_insert is None:  # under the write lock
                self._batch_insert = BatchInsert(connection.dialect)
            self._batch_insert(connection, rows)

    def _take(self) -> list[Recorded]:
        with self._queue_lock:
            taken = list(self._queued)
            self._queued.clear()
        return taken

    def _requeue(self, taken: list[Recorded]) -> None:
        """Put calls whose write failed back at the front, keeping the bound (the newest go over it)."""
        with self._queue_lock:
            self._queued.extendleft(reversed(taken))
            over = len(self._queued) - self.max_queued
            for _ in range(max(0, over)):
                self._queued.pop()
        if over > 0:
            self._drop(over, "queue_full")

    def _drop(self, count: int, reason: str) -> None:
        """Rows that will never be written: counted in the metrics and logged (a full queue once until a write
        succeeds again, not once per row)."""
        with self._queue_lock:
            self.dropped += count
            quiet = reason == "queue_full" and self._drop_reported
            self._drop_reported = self._drop_reported or reason == "queue_full"
        if self.metrics is not None:
            self.metrics.record_audit_rows_dropped(reason, count)
        if not quiet:
            self.log.error("audit_rows_dropped", rows=count, reason=reason, max_queued=self.max_queued)

    def _write_queued(self, *, then: Row | None = None) -> None:
        """Write every queued row (and `then` after them) in one transaction; on failure they stay queued and the
        error is raised."""
        with self._write_lock:
            taken = self._take()
            rows = [row_of(recorded) for recorded in taken]
            if then is not None:
                rows.append(then)  # `then` is its caller's to report: never requeued
            if not rows:
                return
            try:
                self._insert(rows)
            except Exception:
                self._requeue(taken)
                raise
            self._drop_reported = False

    def _write_in_background(self) -> bool:
        try:
            self._write_queued()
        except Exception:
            self.log.warning("audit_write_failed", queued=len(self._queued), exc_info=True)
            return False
        return True

    async def _background_writer(self) -> None:
        """Writes queued rows every `flush_interval` while there are any (backing off after a failed write), then
        ends; the next queued row starts another."""
        failures = 0
        while True:
            await anyio.sleep(min(self.flush_interval * 2**failures, MAX_RETRY_WAIT_SECONDS))
            written = await anyio.to_thread.run_sync(self._write_in_background)
            failures = 0 if written else failures + 1
            if written and not self._queued:
                return

    # ---- recording ----------------------------------------------------------------------------------------------
    def record_sync(self, actor: str, action: str, **fields: Any) -> None:
        """An administrative action: written (after the queued tool calls) before this returns."""
        self._write_queued(then=self._row(actor, action, **fields))

    async def record(self, actor: str, action: str, **fields: Any) -> None:
        """An administrative action: written (after the queued tool calls) before the caller goes on."""
        row = self._row(actor, action, **fields)
        await anyio.to_thread.run_sync(lambda: self._write_queued(then=row))

    async def record_tool_call(self, actor: str, **fields: Any) -> None:
        """A tool call's row: queued, written by the background writer within `flush_interval` (`flush` writes it
        at once). Never waits on the database and never fails the call."""
        recorded = (self.clock(), actor, "tool_call", fields)
        with self._queue_lock:
            fits = len(self._queued) < self.max_queued
            if fits:
                self._queued.append(recorded)
        if not fits:
            self._drop(1, "queue_full")
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._background_writer())

    def flush_sync(self) -> None:
        """Write every row queued so far, now (blocking); raises if the database refuses (the rows stay queued)."""
        self._write_queued()

    async def flush(self) -> None:
        """Write every row queued so far, now; raises if the database refuses (the rows stay queued)."""
        await anyio.to_thread.run_sync(self._write_queued)

    async def written(self) -> None:
        """Until the background writer has written every queued row and stopped (at once when it is not running)."""
        writer = self._writer
        if writer is not None and not writer.done():
            await asyncio.shield(writer)

    async def aclose(self) -> None:
        """At shutdown: stop the background writer and write what is queued; rows that cannot be written are
        counted and logged as dropped."""
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done() and writer.get_loop() is asyncio.get_running_loop():
            writer.cancel()
            await asyncio.wait([writer])  # its end, without its CancelledError (ours still propagates)
        try:
            await self.flush()
        except Exception:
            self.log.warning("audit_write_failed", queued=len(self._queued), exc_info=True)
            self._drop(len(self._take()), "unwritable_at_shutdown")

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
