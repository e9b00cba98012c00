"""What the audit trail's writer stores, on SQLite and PostgreSQL: exactly what the previous write — SQLAlchemy's
`connection.execute(insert(AuditEvent), rows)` — stored for the same rows, read back through `AuditTrail.rows()` and
as the database holds it: hostile strings (unicode, quotes, COPY's and SQL's own escapes, very long values cut where
the trail cuts them), Nones, many rows in one batch, timestamps to the microsecond in the order recorded."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from server.monitoring.audit import AuditTrail, Row
from server.runtime import Runtime
from server.settings import Settings
from server.vault.database import make_engine
from server.vault.models import AuditEvent
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override

pytestmark = pytest.mark.anyio

# NUL and lone surrogates are left out: no write can store them as they are, so the trail cleans them (last test).
HOSTILE = [
    "plain",
    "ünïcødé ✓ 漢字 עברית \u202eevil\u202c e\u0301 ﷽ 🙂👩‍👩‍👧",
    "quotes ' \" ` ; -- DROP TABLE audit_event; /* */",
    "tab\there newline\nthere carriage\rreturn vertical\x0bform\x0cfeed escape\x1b del\x7f bell\x07",
    "backslashes \\ \\\\ \\N \\t \\x41 and COPY's end of data:\n\\.\n",
    "\\.",
    "parameter markers %s %(at)s %% ? ?1 :name $1 {} {0}",
    'json-ish {"a": [1, 2]} ["]" null true',
    "x" * 1000,
    "🙂" * 500,
    " leading and trailing spaces ",
]
# Stamps as a clock might give them: no microseconds, the last one, equal, going back, another zone, far years.
STAMPS = [
    datetime(2026, 12, 2, 7, 0, 0, 0, tzinfo=UTC),
    datetime(2026, 12, 2, 7, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 12, 2, 7, 0, 0, 999_999, tzinfo=UTC),
    datetime(2026, 12, 2, 7, 0, 0, 999_999, tzinfo=UTC),
    datetime(2026, 12, 2, 6, 59, 59, 500_000, tzinfo=UTC),
    datetime(2026, 12, 2, 12, 30, 0, 123_456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2100, 2, 28, 0, 0, 0, 7, tzinfo=UTC),
]
STORED_COLUMNS = "CAST(at AS TEXT), actor, action, account_id, target, status, duration_ms, CAST(detail AS TEXT)"


def tool_calls(count: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` tool calls' actors and fields, cycling through the hostile values, None and the integer edges."""
    calls = []
    for n, value in zip(range(count), itertools.cycle(HOSTILE), strict=False):
        calls.append(
            (
                f"acme/{value}",
                {
                    "target": [value, None, ""][n % 3],
                    "status": [None, "ok", value[:32]][n % 3],
                    "account_id": [value[:32], None][n % 2],
                    "duration_ms": [None, 0, -1, 2**31 - 1, n][n % 5],
                    "tool": value,
                    "via": f"key:{value}",
                    "reason": None if n % 2 else value,
                    "label": n,  # not a string: stored as one
                    "access_token": value,  # not an allowed key: never stored
                },
            )
        )
    return calls


def previous_write(engine: Engine, rows: list[Row]) -> None:
    """The write before `BatchInsert`: SQLAlchemy's generic executemany of the rows, in one transaction."""
    with engine.begin() as connection:
        connection.execute(insert(AuditEvent), rows)


def read_back(trail: AuditTrail, after_id: int) -> list[dict[str, Any]]:
    return [row.model_dump(exclude={"id"}) for row in trail.rows(after_id=after_id, limit=100_000)]


def stored(engine: Engine, after_id: int) -> list[tuple[Any, ...]]:
    """The rows as the database holds them: the timestamp and the JSON as their text."""
    with engine.connect() as connection:
        query = text(f"SELECT {STORED_COLUMNS} FROM audit_event WHERE id > :after ORDER BY id")
        return [tuple(row) for row in connection.execute(query, {"after": after_id})]


def last_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT COALESCE(MAX(id), 0) FROM audit_event")).scalar_one()


async def test_a_batch_of_hostile_rows_is_stored_exactly_as_the_previous_write_stored_it(runtime: Runtime):
    engine = runtime.vault.engine
    calls = tool_calls(600)  # one batch, as the background writer takes a busy 0.1 s
    admin_action = "key_created_" + "k" * 100  # cut to the column's 64
    stamps = [STAMPS[n % len(STAMPS)] + timedelta(microseconds=n // len(STAMPS)) for n in range(len(calls) + 1)]

    reference = AuditTrail(engine, clock=iter(stamps).__next__)
    rows = [reference._row(actor, "tool_call", **fields) for actor, fields in calls]
    rows.append(reference._row("cli:" + HOSTILE[1], admin_action, target=HOSTILE[4], reason=HOSTILE[8]))
    previous_write(engine, rows)
    written_before = last_id(engine)

    trail = AuditTrail(engine, clock=iter(stamps).__next__)
    for actor, fields in calls:
        await trail.record_tool_call(actor, **fields)
    await trail.record("cli:" + HOSTILE[1], admin_action, target=HOSTILE[4], reason=HOSTILE[8])  # after the queue
    await trail.aclose()

    assert read_back(trail, written_before) == read_back(trail, 0)[: len(rows)]
    assert stored(engine, written_before) == stored(engine, 0)[: len(rows)]
    new = read_back(trail, written_before)
    assert len(new) == len(rows) == 601
    assert [row["at"] for row in new] == [stamp.astimezone(UTC) for stamp in stamps]  # to the microsecond, in order
    assert new[-1]["action"] == admin_action[:64] and new[-1]["actor"] == "cli:" + HOSTILE[1]
    assert new[-1]["detail"] == {"reason": HOSTILE[8][:200]}
    assert new[8]["actor"] == f"acme/{HOSTILE[8]}"[:400] and new[8]["detail"]["tool"] == HOSTILE[8][:200]
    assert new[4]["detail"] == {"tool": HOSTILE[4], "via": f"key:{HOSTILE[4]}", "reason": HOSTILE[4], "label": "4"}
    assert new[1]["target"] is None and new[2]["target"] is None  # None, and "" (no target)
    assert {row["duration_ms"] for row in new[:5]} == {None, 0, -1, 2**31 - 1, 4}


async def test_a_write_the_database_refuses_raises_sqlalchemys_error_and_keeps_the_rows_queued(settings: Settings):
    engine = make_engine(settings.effective_database_url)  # no runtime opened it: no tables, every write fails
    trail = AuditTrail(engine)
    try:
        await trail.record_tool_call("acme/alice", target="acme/alice/slack", status="ok", tool="slack.read_channel")
        with pytest.raises(DBAPIError):
            await trail.flush()
        with pytest.raises(DBAPIError):
            await trail.record("cli:root", "key_created", target="acme/alice")  # its caller's to report
        SQLModel.metadata.create_all(engine, tables=[AuditEvent.__table__])
        await trail.flush()
        assert [(r.action, r.detail) for r in trail.rows()] == [("tool_call", {"tool": "slack.read_channel"})]
        assert trail.dropped == 0
    finally:
        await trail.aclose()
        engine.dispose()


async def test_a_row_no_database_could_store_is_stored_cleaned_and_the_rows_behind_it_are_written(runtime: Runtime):
    engine = runtime.vault.engine
    # A lone surrogate fails every write on both databases (and NUL on PostgreSQL): as it came, this row would stay
    # at the head of the queue, refused batch after batch, until the queue filled and later rows were dropped.
    raw = {"at": STAMPS[0], "actor": "acme/\ud800", "action": "tool_call", "detail": {}}
    with pytest.raises(UnicodeEncodeError):  # the driver's, whichever database
        previous_write(engine, [raw])
    written_before = last_id(engine)

    trail = AuditTrail(engine)
    await trail.record_tool_call(
        "acme/nul\x00user\ud800",
        target="acme/t\x00\udfff/slack",
        status="ok\x00",
        duration_ms=2**63,
        tool="x\x00\ud83d",
        via="stdio",
    )
    await trail.record_tool_call("acme/alice", target="acme/alice/slack", status="ok", tool="slack.read_channel")
    await trail.aclose()

    rows = read_back(trail, written_before)
    assert [(row["actor"], row["target"], row["status"], row["duration_ms"], row["detail"]) for row in rows] == [
        ("acme/nul\ufffduser?", "acme/t\ufffd?/slack", "ok\ufffd", 2**31 - 1, {"tool": "x\ufffd?", "via": "stdio"}),
        ("acme/alice", "acme/alice/slack", "ok", None, {"tool": "slack.read_channel"}),
    ]
    assert trail.dropped == 0
