"""What writing tool-call audit rows costs the writer thread, per row, side by side on the same table:

  (old) the previous write: each recorded call made a row (`row_of`), then `connection.execute(insert(AuditEvent),
        rows)` in one transaction per batch (SQLAlchemy core executemany, its per-row parameter processing;
        psycopg's executemany on PostgreSQL)
  (new) `AuditTrail`'s real write path: the calls queued as `record_tool_call` queues them, then `flush_sync` (take
        the queue, make the rows, `BatchInsert`, commit)

Both count making the rows: the writer makes them now, off the event loop. Each writes the same calls (recorded
beforehand) in batches like the live writer's,
alternating batch by batch so both see the same table size and the same machine; for each batch size it prints the
writer thread's CPU (`time.thread_time`) and wall time per row and per batch, and new/old. The schema is the real
one (the migrations), on SQLite (a temporary file) and, given `--postgres URL` or GRANTKEEPER_TEST_POSTGRES_URL, on
PostgreSQL (a scratch schema).

    .venv/bin/python bench/audit_writes.py [--rows 20000] [--batch 60] [--single-rows 2000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.monitoring.audit import AuditTrail, Recorded, row_of
from server.vault.database import make_engine, migrate
from server.vault.models import AuditEvent, utcnow
from simulators.scratch_database import postgres_unreachable_reason, printable, scratch_schema

Write = Callable[[list[Recorded]], None]


def tool_calls(count: int) -> list[Recorded]:
    """Calls as `record_tool_call` records them: the stamp, the actor, the action, the fields as given."""
    return [
        (
            utcnow(),
            f"acme/user{n % 50}",
            "tool_call",
            {
                "target": f"acme/user{n % 50}/slack/work",
                "status": "ok" if n % 7 else "reauth_required",
                "duration_ms": n % 900,
                "tool": "slack.read_channel",
                "via": f"key:k{n % 13:04d}",
            },
        )
        for n in range(count)
    ]


def old_write(engine: Engine) -> Write:
    def write(calls: list[Recorded]) -> None:
        rows = [row_of(call) for call in calls]
        with engine.begin() as connection:
            connection.execute(insert(AuditEvent), rows)

    return write


def new_write(trail: AuditTrail) -> Write:
    def write(calls: list[Recorded]) -> None:
        trail._queued.extend(calls)  # as record_tool_call queues them
        trail.flush_sync()

    return write


def measure(writes: dict[str, Write], rows: list[Recorded], batch: int) -> dict[str, tuple[float, float]]:
    """CPU and wall seconds each write took over all of `rows`, batch by batch, the writes alternating."""
    batches = [rows[start : start + batch] for start in range(0, len(rows), batch)]
    spent = {name: (0.0, 0.0) for name in writes}
    for write in writes.values():  # warm-up: connections, compiled statements, caches
        write(batches[0])
    for rows_of_batch in batches:
        for name, write in writes.items():
            cpu, wall = time.thread_time(), time.perf_counter()
            write(rows_of_batch)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            spent[name] = (spent[name][0] + cpu, spent[name][1] + wall)
    return spent


@contextmanager
def database(name: str, postgres_url: str | None) -> Iterator[Engine]:
    if name == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            engine = make_engine(f"sqlite:///{Path(directory) / 'audit.db'}")
            try:
                migrate(engine)
                yield engine
            finally:
                engine.dispose()
        return
    assert postgres_url is not None
    with scratch_schema(postgres_url) as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            yield engine
        finally:
            engine.dispose()


def run(name: str, postgres_url: str | None, sizes: list[tuple[int, int]]) -> None:
    with database(name, postgres_url) as engine:
        trail = AuditTrail(engine)
        writes = {"old": old_write(engine), "new": new_write(trail)}
        written = 0
        for batch, count in sizes:
            spent = measure(writes, tool_calls(count), batch)
            written += 2 * (count + min(batch, count))  # and the warm-up batch
            batches = -(-count // batch)
            for label, (cpu, wall) in spent.items():
                ratio = "" if label == "old" else f"{cpu / spent['old'][0]:>14.2f}{wall / spent['old'][1]:>14.2f}"
                print(
                    f"{name:11}{batch:>6}{count:>8}  {label:4}{cpu / count * 1e6:>14.2f}{wall / count * 1e6:>14.2f}"
                    f"{cpu / batches * 1e6:>14.1f}{wall / batches * 1e6:>14.1f}{ratio}"
                )
        with engine.connect() as connection:
            stored = connection.scalar(select(func.count()).select_from(AuditEvent))
        assert stored == written, (stored, written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="rows each way, in batches of --batch")
    parser.add_argument("--batch", type=int, default=60, help="rows per transaction, like the live writer's 0.1 s batch")
    parser.add_argument("--single-rows", type=int, default=2_000, help="rows each way written one per transaction")
    parser.add_argument(
        "--postgres", default=os.environ.get("GRANTKEEPER_TEST_POSTGRES_URL"), help="a PostgreSQL URL ('' for SQLite only)"
    )
    args = parser.parse_args()
    databases = ["sqlite"]
    if args.postgres:
        if reason := postgres_unreachable_reason(args.postgres):
            raise SystemExit(f"cannot run on PostgreSQL: {reason}")
        databases.append("postgresql")
        print(f"PostgreSQL: {printable(args.postgres)}")
    sizes = [(args.batch, args.rows)] + ([(1, args.single_rows)] if args.single_rows else [])
    print(
        f"{'':11}{'batch':>6}{'rows':>8}  {'':4}{'CPU µs/row':>14}{'wall µs/row':>14}{'CPU µs/batch':>14}"
        f"{'wall µs/batch':>14}{'CPU new/old':>14}{'wall new/old':>14}"
    )
    for name in databases:
        run(name, args.postgres, sizes)


if __name__ == "__main__":
    main()
