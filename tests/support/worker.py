"""A grantkeeper worker process for contention and crash tests: opens the shared vault from GRANTKEEPER_*
settings, says `ready`, waits for `go` on stdin, then either makes N concurrent tool calls (`--mode calls`) or
runs the refresh scheduler until nothing is due (`--mode scheduler`), or runs the scheduler beside `--lanes` lanes of
one tool call after another, `--calls` in all (`--mode soak`), and prints what it saw as JSON."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import asdict

import anyio
from mcp import Client

from server.app import build_server
from server.background import refresh_scheduler
from server.monitoring.logging import configure_logging
from server.runtime import Runtime
from server.settings import Settings


async def work(calls: int, tool: str, arguments: dict) -> dict:
    settings = Settings()
    configure_logging("warning", "json")
    runtime = Runtime.open(settings)
    server, _ = build_server(runtime)
    latencies: list[float] = []
    statuses: list[str] = []
    try:
        async with Client(server, raise_exceptions=True) as client:
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)

            async def one() -> None:
                started = time.perf_counter()
                result = await client.call_tool(tool, arguments)
                latencies.append(time.perf_counter() - started)
                statuses.append((result.structured_content or {}).get("status", "no_structured_content"))

            async with anyio.create_task_group() as group:
                for _ in range(calls):
                    group.start_soon(one)
    finally:
        await runtime.aclose()
    return {"statuses": statuses, "latencies": latencies}


async def soak(calls: int, lanes: int, tool: str, arguments: dict) -> dict:
    """Fleet mode under load: the refresh scheduler runs (as in `serve`) while lanes of calls go one after another."""
    settings = Settings()
    configure_logging("warning", "json")
    runtime = Runtime.open(settings)
    server, _ = build_server(runtime)
    statuses: list[str] = []
    reasons: list[str] = []
    try:
        async with Client(server, raise_exceptions=True) as client:
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)

            async def lane(count: int) -> None:
                for _ in range(count):
                    result = await client.call_tool(tool, arguments)
                    content = result.structured_content or {}
                    statuses.append(content.get("status", "no_structured_content"))
                    if content.get("reason"):
                        reasons.append(content["reason"])

            async with anyio.create_task_group() as background:
                background.start_soon(refresh_scheduler(runtime).run)
                async with anyio.create_task_group() as group:
                    for number in range(lanes):
                        group.start_soon(lane, calls // lanes + (1 if number < calls % lanes else 0))
                background.cancel_scope.cancel()
    finally:
        await runtime.aclose()
    return {"statuses": statuses, "reasons": reasons}


async def schedule() -> dict:
    settings = Settings()
    configure_logging("warning", "json")
    runtime = Runtime.open(settings)
    try:
        scheduler = refresh_scheduler(runtime)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        started = time.perf_counter()
        stats = await scheduler.run_until_idle()
        seconds = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
        return {**asdict(stats), "seconds": seconds, "peak_rss_mb": peak_rss_mb}
    finally:
        await runtime.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["calls", "scheduler", "soak"], default="calls")
    parser.add_argument("--calls", type=int, default=25)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--tool", default="slack_read_channel")
    parser.add_argument("--arguments", default='{"channel": "C0GENERAL", "limit": 1}')
    args = parser.parse_args()
    if args.mode == "scheduler":
        print(json.dumps(anyio.run(schedule)), flush=True)
    elif args.mode == "soak":
        print(json.dumps(anyio.run(soak, args.calls, args.lanes, args.tool, json.loads(args.arguments))), flush=True)
    else:
        print(json.dumps(anyio.run(work, args.calls, args.tool, json.loads(args.arguments))), flush=True)


if __name__ == "__main__":
    main()
