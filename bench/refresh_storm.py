"""Refresh storm: 4 OS processes × 50 concurrent tool calls on one expired, rotating Slack token, with the
simulator's reuse detection on. Prints token-endpoint hits, reuse detections, statuses and call latency.

    .venv/bin/python -m bench.refresh_storm [--database sqlite|postgresql|both] [--processes 4] [--calls 50]
"""

from __future__ import annotations

import argparse
import collections
import time

from bench.common import bench_environment, quantile
from server.runtime import Runtime
from server.settings import Settings
from simulators.fleet import run_workers
from simulators.seeding import seed_account


def storm(database: str, processes: int, calls: int) -> None:
    with bench_environment(database) as bench:
        settings = Settings()
        runtime = Runtime.open(settings)
        seed_account(settings, runtime.vault, "slack", bench.slack.issue_grant(), expired=True)
        runtime.vault.engine.dispose()
        started = time.perf_counter()
        outputs = run_workers(bench.env, processes=processes, calls=calls)
        wall = time.perf_counter() - started
        statuses = collections.Counter(s for o in outputs for s in o["statuses"])
        latencies = [seconds * 1000 for o in outputs for seconds in o["latencies"]]
        counters = bench.slack.counters
        print(
            f"{database:<10} {processes} processes x {calls} calls: "
            f"token-endpoint hits {counters.token_requests}, reuse detections {counters.reuse_detections}, "
            f"statuses {dict(statuses)}, "
            f"latency p50 {quantile(latencies, 0.50):.0f} ms, p99 {quantile(latencies, 0.99):.0f} ms, "
            f"max {max(latencies):.0f} ms (wall {wall:.1f} s incl. release)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    for database in ["sqlite", "postgresql"] if args.database == "both" else [args.database]:
        storm(database, args.processes, args.calls)


if __name__ == "__main__":
    main()
