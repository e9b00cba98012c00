"""Scheduler at scale: a vault of 100,000 accounts of which 1,000 are due. Prints the due-scan time (the indexed
claim query), the refresh throughput of scheduler worker process(es) against the Slack simulator, and their peak
memory.

    .venv/bin/python -m bench.scheduler_scale [--database sqlite|postgresql|both] [--accounts 100000] [--due 1000]
                                              [--workers 1] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import bench_environment, quantile
from server.runtime import Runtime
from server.settings import Settings
from server.vault.models import utcnow
from server.vault.schedule import due_refreshes
from simulators.fleet import run_workers
from simulators.seeding import seed_many

SCAN_REPEATS = 200


def scale(database: str, accounts: int, due: int, workers: int, concurrency: int) -> None:
    settings_env = {"scheduler_provider_rate": "0", "scheduler_concurrency": str(concurrency)}
    with bench_environment(database, **settings_env) as bench:
        settings = Settings()
        runtime = Runtime.open(settings)
        vault = runtime.vault
        started = time.perf_counter()
        seed_many(
            settings,
            vault,
            "slack",
            ((f"xoxe.xoxb-bench-{i}", f"xoxe-1-bench-{i}") for i in range(accounts - due)),
            lifetime=43200,
            lifetime_used=0.1,
            user_prefix="idle",
        )
        seed_many(
            settings,
            vault,
            "slack",
            [bench.slack.issue_grant() for _ in range(due)],
            lifetime=43200,
            lifetime_used=0.8,
            user_prefix="due",
        )
        seeded = time.perf_counter() - started
        with vault.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
            query = due_refreshes(utcnow(), settings.scheduler_batch_size)
            compiled = str(query.compile(vault.engine, compile_kwargs={"literal_binds": True}))
            explain = "EXPLAIN QUERY PLAN" if vault.engine.dialect.name == "sqlite" else "EXPLAIN"
            plan = [str(row[-1]) for row in connection.exec_driver_sql(f"{explain} {compiled}")]
            scans = []
            for _ in range(SCAN_REPEATS):
                began = time.perf_counter()
                rows = connection.execute(due_refreshes(utcnow(), settings.scheduler_batch_size)).all()
                scans.append((time.perf_counter() - began) * 1000)
        runtime.vault.engine.dispose()
        outputs = run_workers(bench.env, processes=workers, mode="scheduler", timeout=900)
        refreshed = sum(o["refreshed"] for o in outputs)
        seconds = max(o["seconds"] for o in outputs)
        index_line = next((line for line in plan if "ix_credential_refresh_due_at" in line), plan[0]).strip()
        print(f"{database}: {accounts:,} accounts, {due:,} due; seeded in {seeded:.1f} s")
        print(
            f"  due scan (claim query, LIMIT {settings.scheduler_batch_size}, {len(rows)} rows): "
            f"median {statistics.median(scans):.2f} ms, p99 {quantile(scans, 0.99):.2f} ms over {SCAN_REPEATS} runs; "
            f"plan: {index_line}"
        )
        print(
            f"  refresh: {refreshed:,} refreshed by {workers} worker(s) x concurrency {concurrency} in {seconds:.1f} s "
            f"= {refreshed / seconds:.0f} refreshes/s; token-endpoint hits {bench.slack.counters.token_requests}, "
            f"reuse detections {bench.slack.counters.reuse_detections}, failed "
            f"{sum(o['failed'] + o['lease_lost'] for o in outputs)}"
        )
        peaks = ", ".join(f"{o['peak_rss_mb']:.0f} MB" for o in outputs)
        print(f"  peak memory (RSS) per scheduler worker: {peaks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    for database in ["sqlite", "postgresql"] if args.database == "both" else [args.database]:
        scale(database, args.accounts, args.due, args.workers, args.concurrency)


if __name__ == "__main__":
    main()
