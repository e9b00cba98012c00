"""Start several worker processes, release them at once, collect what each saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_workers(env: dict[str, str], processes: int, calls: int, tool: str = "slack_read_channel",
                arguments: str = '{"channel": "C0GENERAL", "limit": 1}', timeout: float = 120) -> list[dict]:
    """Every worker opens the vault and its MCP session, then all are released together (a barrier on stdin)."""
    full_env = {**os.environ, **env}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.worker", "--calls", str(calls), "--tool", tool,
             "--arguments", arguments],
            cwd=ROOT, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(processes)
    ]
    try:
        for worker in workers:
            line = worker.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"worker did not start: {line!r} {worker.stderr.read()[-2000:]}")
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=timeout)
            if worker.returncode != 0:
                raise RuntimeError(f"worker failed ({worker.returncode}): {err[-3000:]}")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        return outputs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
