"""What grantkeeper costs per tool call, side by side in one process against the same simulator endpoint:

  (a)  a direct httpx2 call with a fixed token
  (b)  a bare MCPServer tool making that same call with a fixed token, through the in-memory MCP client; it declares
       the grantkeeper tool's own arguments (types, bounds, patterns, the context), so the MCP SDK validates the
       same input for both and the difference is what grantkeeper adds
  (b0) the same bare tool declaring only `channel: str, limit: int` (the first baseline, kept for comparison:
       against it c also pays for validating the real tool's richer arguments)
  (c)  the grantkeeper tool (vault, lifecycle, classification, retries) through the same in-memory client

Prints p50/p99 of each and the ratios c/b (the cost of vault + lifecycle; goal <= 1.05), c/b0 and c/a: pooled over
every call, and paired — the ratio of p50s within each round, whose median moves less with a shared machine's
drift than the pooled figure does (each round's contenders run within a second of each other). Last, the CPU time
per call of the whole process (every thread: the simulator's, grantkeeper's audit writer's), which scheduling noise
moves least of all.

    .venv/bin/python bench/tool_call_overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import tempfile
import time
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import anyio
import httpx2
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from providers.slack import Message
from server.app import build_server
from server.monitoring.logging import configure_logging
from server.results import to_call_result
from server.runtime import Runtime
from server.settings import Settings
from simulators import SimulatorServer, SlackSimulator
from simulators.environment import simulator_environment
from simulators.seeding import seed_account
from tools import slack as slack_tools
from tools.slack import ReadChannelOk, ReadChannelResult
from tools.toolset import with_signature

ARGS: dict[str, str | int] = {"channel": "C0GENERAL", "limit": 1}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bare_server(http: httpx2.AsyncClient, url: str, token: str, *, same_arguments: bool) -> MCPServer:
    """The bare tool; with `same_arguments`, presenting the real tool's signature to the SDK."""
    server = MCPServer("bare")

    async def read(channel: str, limit: int) -> CallToolResult:
        response = await http.get(url, params={"channel": channel, "limit": limit}, headers={"Authorization": f"Bearer {token}"})
        body = response.json()
        return to_call_result(
            ReadChannelOk(
                channel=channel,
                messages=[Message.model_validate(m) for m in body.get("messages", [])],
                has_more=bool(body.get("has_more")),
                next_cursor=(body.get("response_metadata") or {}).get("next_cursor") or None,
            )
        )

    async def read_channel(channel: str, limit: int = 20) -> Annotated[CallToolResult, ReadChannelResult]:
        return await read(channel, limit)

    async def read_channel_same_arguments(
        ctx: Context, channel: str, limit: int = 20, **_: object
    ) -> Annotated[CallToolResult, ReadChannelResult]:
        return await read(channel, limit)

    if same_arguments:
        real = slack_tools.read_channel
        hints = typing.get_type_hints(real, include_extras=True)
        server.add_tool(
            with_signature(read_channel_same_arguments, inspect.signature(real, eval_str=True), hints), name="slack_read_channel"
        )
    else:
        server.add_tool(read_channel, name="slack_read_channel")
    return server


async def measure(calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as home, SimulatorServer(SlackSimulator()) as sim_server:
        sim = sim_server.app
        os.environ.update(simulator_environment(sim_server.url, "http://127.0.0.1:9"))
        os.environ.update({"GRANTKEEPER_HOME": home, "GRANTKEEPER_ORG": "acme", "GRANTKEEPER_USER": "alice"})
        settings = Settings()
        runtime = Runtime.open(settings)
        tokens = sim.issue_grant()
        seed_account(settings, runtime.vault, "slack", tokens)
        url = f"{sim_server.url}/api/conversations.history"
        http = httpx2.AsyncClient()
        grantkeeper, _ = build_server(runtime)
        async with (
            Client(bare_server(http, url, tokens.access_token, same_arguments=True)) as bare,
            Client(bare_server(http, url, tokens.access_token, same_arguments=False)) as bare_minimal,
            Client(grantkeeper) as ours,
        ):

            async def direct() -> None:
                response = await http.get(url, params=ARGS, headers={"Authorization": f"Bearer {tokens.access_token}"})
                assert response.json()["ok"]

            async def via(client: Client) -> None:
                result = await client.call_tool("slack_read_channel", ARGS)
                assert result.structured_content["status"] == "ok", result.structured_content

            contenders: dict[str, Callable[[], Awaitable[None]]] = {
                "a direct httpx2": direct,
                "b bare MCPServer": lambda: via(bare),
                "b0 bare, 2 args": lambda: via(bare_minimal),
                "c grantkeeper": lambda: via(ours),
            }
            samples: dict[str, list[float]] = {name: [] for name in contenders}
            per_round_p50: dict[str, list[float]] = {name: [] for name in contenders}
            cpu_seconds: dict[str, float] = {name: 0.0 for name in contenders}  # every thread's: the simulator's too
            for run in contenders.values():  # warm-up
                for _ in range(100):
                    await run()
            per_round = max(1, calls // rounds)
            for _ in range(rounds):  # interleaved rounds, so drift hits every contender alike
                for name, run in contenders.items():
                    this_round = []
                    cpu_started = time.process_time()
                    for _ in range(per_round):
                        started = time.perf_counter()
                        await run()
                        this_round.append(time.perf_counter() - started)
                    cpu_seconds[name] += time.process_time() - cpu_started
                    samples[name] += this_round
                    per_round_p50[name].append(statistics.median(this_round))
        await http.aclose()
        await runtime.aclose()
        assert sim.counters.token_requests == 0

    print(f"{'':18}{'calls':>7}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'CPU ms':>10}")
    for name, values in samples.items():
        print(
            f"{name:18}{len(values):>7}{percentile(values, 0.5) * 1e3:>10.3f}{percentile(values, 0.99) * 1e3:>10.3f}"
            f"{statistics.fmean(values) * 1e3:>10.3f}{cpu_seconds[name] / len(values) * 1e3:>10.3f}"
        )
    a, b, b0, c = (samples[name] for name in contenders)
    ra, rb, rb0, rc = (per_round_p50[name] for name in contenders)
    print(f"{'pooled':>20}{'':18}| paired by round: p50 ratio, median (lowest–highest of {rounds} rounds)")
    for label, num, den, round_num, round_den in (
        ("c/b", c, b, rc, rb),
        ("c/b0", c, b0, rc, rb0),
        ("c/a", c, a, rc, ra),
        ("b/a", b, a, rb, ra),
    ):
        p50 = percentile(num, 0.5) / percentile(den, 0.5)
        p99 = percentile(num, 0.99) / percentile(den, 0.99)
        paired = sorted(n / d for n, d in zip(round_num, round_den, strict=True))
        print(
            f"{label:5} p50 {p50:.3f}  p99 {p99:.3f}  mean {statistics.fmean(num) / statistics.fmean(den):.3f}  "
            f"| {statistics.median(paired):.3f} ({paired[0]:.3f}–{paired[-1]:.3f})"
        )
    b_cpu, c_cpu = cpu_seconds["b bare MCPServer"] / len(b), cpu_seconds["c grantkeeper"] / len(c)
    print(f"CPU per call, every thread (simulator, audit writer): c/b {c_cpu / b_cpu:.3f}, c - b {(c_cpu - b_cpu) * 1e6:.0f} µs")


def main() -> None:
    configure_logging("warning")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    anyio.run(measure, args.calls, args.rounds)


if __name__ == "__main__":
    main()
