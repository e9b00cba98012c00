"""One worker of a fleet (simulators/fleet.py starts them as `python -m simulators.fleet_worker`): opens the shared
vault from GRANTKEEPER_* settings, says `ready`, waits for `go` on stdin, then either makes N concurrent tool calls
(`--mode calls`) or runs the refresh scheduler until nothing is due (`--mode scheduler`), runs the scheduler beside
`--lanes` lanes of one tool call after another, `--calls` in all (`--mode soak`), or (`--mode lifecycle`) probes
every account N times at once with its webhook deliverer running, says `probed`, and on `drain` delivers until the
outbox has nothing pending; then prints what it saw as JSON."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

import anyio
from mcp import Client

from server.app import build_server
from server.background import refresh_scheduler, webhook_deliverer
from server.monitoring.logging import configure_logging
from server.runtime import Runtime
from server.settings import Settings


@asynccontextmanager
async def opened_runtime(log_level: str = "warning") -> AsyncIterator[Runtime]:
    """The shared vault's runtime, from GRANTKEEPER_* settings, closed on the way out."""
    settings = Settings()
    configure_logging(log_level, "json")
    runtime = Runtime.open(settings)
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def ready_then_wait_for_go() -> None:
    """The barrier of simulators/fleet.py's `release_together`: say `ready`, then wait for a line on stdin."""
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)


@asynccontextmanager
async def released_client() -> AsyncIterator[tuple[Runtime, Client]]:
    """A runtime and an MCP client of its server, entered only once the fleet has let this worker go."""
    async with opened_runtime() as runtime:
        server, _ = build_server(runtime)
        async with Client(server, raise_exceptions=True) as client:
            await ready_then_wait_for_go()
            yield runtime, client


async def work(calls: int, tool: str, arguments: dict) -> dict:
    latencies: list[float] = []
    statuses: list[str] = []
    async with released_client() as (_, client):

        async def one() -> None:
            started = time.perf_counter()
            result = await client.call_tool(tool, arguments)
            latencies.append(time.perf_counter() - started)
            statuses.append((result.structured_content or {}).get("status", "no_structured_content"))

        async with anyio.create_task_group() as group:
            for _ in range(calls):
                group.start_soon(one)
    return {"statuses": statuses, "latencies": latencies}


async def soak(calls: int, lanes: int, tool: str, arguments: dict) -> dict:
    """Fleet mode under load: the refresh scheduler runs (as in `serve`) while lanes of calls go one after another."""
    statuses: list[str] = []
    reasons: list[str] = []
    async with released_client() as (runtime, client):

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
    return {"statuses": statuses, "reasons": reasons}


async def schedule() -> dict:
    async with opened_runtime() as runtime:
        scheduler = refresh_scheduler(runtime)
        await ready_then_wait_for_go()
        started = time.perf_counter()
        stats = await scheduler.run_until_idle()
        seconds = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
        return {**asdict(stats), "seconds": seconds, "peak_rss_mb": peak_rss_mb}


async def lifecycle(probes: int) -> dict:
    statuses: list[str] = []
    # Errors only: a receiver that is down makes a warning per attempt, and nobody reads stderr until the end.
    async with opened_runtime("error") as runtime:
        deliverer = webhook_deliverer(runtime)
        await ready_then_wait_for_go()
        async with anyio.create_task_group() as group:
            group.start_soon(deliverer.run)

            async def probe(account) -> None:
                statuses.append((await runtime.executor.probe(account)).status)

            async with anyio.create_task_group() as calls:
                for account in await anyio.to_thread.run_sync(runtime.vault.accounts.all):
                    for _ in range(probes):
                        calls.start_soon(probe, account)
            print("probed", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            # A message being sent is still pending, so with none pending nothing is in flight: stop.
            while await anyio.to_thread.run_sync(lambda: runtime.vault.outbox.messages(status="pending", limit=1)):
                await anyio.sleep(0.05)
            group.cancel_scope.cancel()
    return {"statuses": statuses, **asdict(deliverer.stats)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["calls", "scheduler", "soak", "lifecycle"], default="calls")
    parser.add_argument("--calls", type=int, default=25)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--tool", default="slack_read_channel")
    parser.add_argument("--arguments", default='{"channel": "C0GENERAL", "limit": 1}')
    args = parser.parse_args()
    if args.mode == "lifecycle":
        print(json.dumps(anyio.run(lifecycle, args.calls)), flush=True)
    elif args.mode == "scheduler":
        print(json.dumps(anyio.run(schedule)), flush=True)
    elif args.mode == "soak":
        print(json.dumps(anyio.run(soak, args.calls, args.lanes, args.tool, json.loads(args.arguments))), flush=True)
    else:
        print(json.dumps(anyio.run(work, args.calls, args.tool, json.loads(args.arguments))), flush=True)


if __name__ == "__main__":
    main()
