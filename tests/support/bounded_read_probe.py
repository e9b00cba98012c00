"""Run in a fresh process by tests/server/test_response_bounds.py: hostile answers to a Slack read, with the
process's peak memory (ru_maxrss) read before and after each, printed as one JSON line.

The account is already in the vault and the simulator already running (the environment says where); the
process's only work is grantkeeper's, so its peak memory is a clean measure of what reading an answer costs."""

from __future__ import annotations

import json
import os
import resource

import anyio
import httpx2

from server.runtime import Runtime
from server.settings import Settings
from tests.support.mcp import call, mcp_client

READ = {"channel": "C0GENERAL", "limit": 1}


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


async def main() -> None:
    simulator = os.environ["GRANTKEEPER_SLACK_API_BASE_URL"].removesuffix("/api")
    faults = json.loads(os.environ["PROBE_FAULTS"])
    report = []
    runtime = Runtime.open(Settings())
    try:
        async with mcp_client(runtime) as client:
            warm = await call(client, "slack_read_channel", READ)  # imports, pools, caches: all before measuring
            report.append({"fault": None, "status": warm["status"]})
            for fault in faults:
                httpx2.post(f"{simulator}/_sim/faults", json=fault).raise_for_status()
                before = peak_kib()
                result = await call(client, "slack_read_channel", READ)
                report.append(
                    {
                        "fault": fault["fault"],
                        "status": result["status"],
                        "reason": result.get("reason"),
                        "peak_growth_kib": peak_kib() - before,
                    }
                )
    finally:
        await runtime.aclose()
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main)
