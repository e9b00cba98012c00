"""Cold start over stdio: how long from spawning the server until it answers `initialize`, for

  (b) a bare MCPServer with one tool, and
  (g) `grantkeeper serve` (stdio, a fresh vault, its page listener on a free port),

each spawned N times as a subprocess and driven by the real MCP client. Prints the medians and g/b (goal <= 1.3).

    .venv/bin/python bench/cold_start.py [--runs 15]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parents[1]
VAULT_KEY = "bench:" + base64.urlsafe_b64encode(b"c" * 32).decode().rstrip("=")
BARE_SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
def echo(text: str) -> str:
    """Say it back."""
    return text


server.run()
'''


async def time_to_initialize(params: StdioServerParameters) -> float:
    with open(os.devnull, "w") as quiet:
        started = time.perf_counter()
        async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return time.perf_counter() - started


async def measure(runs: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as home:
        env = {key: value for key, value in os.environ.items() if not key.startswith("GRANTKEEPER_")}
        grantkeeper_env = {
            **env,
            "GRANTKEEPER_HOME": home,
            "GRANTKEEPER_VAULT_KEY": VAULT_KEY,
            "GRANTKEEPER_LISTEN_PORT": "0",
            "GRANTKEEPER_LOG_LEVEL": "warning",
            "GRANTKEEPER_SLACK_CLIENT_ID": "bench",
            "GRANTKEEPER_SLACK_CLIENT_SECRET": "bench",
        }
        bare = StdioServerParameters(command=sys.executable, args=["-c", BARE_SERVER], env=env, cwd=str(ROOT))
        grantkeeper = StdioServerParameters(
            command=sys.executable, args=["-m", "server", "serve"], env=grantkeeper_env, cwd=str(ROOT)
        )
        await time_to_initialize(grantkeeper)  # the first start creates the vault schema: not a cold start's cost
        bare_times, grantkeeper_times = [], []
        for _ in range(runs):  # interleaved, so both see the same machine load
            bare_times.append(await time_to_initialize(bare))
            grantkeeper_times.append(await time_to_initialize(grantkeeper))
        return bare_times, grantkeeper_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    bare, grantkeeper = anyio.run(measure, args.runs)
    b, g = statistics.median(bare), statistics.median(grantkeeper)
    print(f"bare MCPServer (one tool)  median {b * 1000:7.1f} ms  (min {min(bare) * 1000:.1f}, max {max(bare) * 1000:.1f})")
    print(
        f"grantkeeper serve (stdio)  median {g * 1000:7.1f} ms  (min {min(grantkeeper) * 1000:.1f}, "
        f"max {max(grantkeeper) * 1000:.1f})"
    )
    print(f"ratio g/b {g / b:.2f} (goal <= 1.3), {args.runs} runs each")


if __name__ == "__main__":
    main()
