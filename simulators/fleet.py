"""A fleet of grantkeeper worker processes (simulators/fleet_worker.py) sharing one vault from GRANTKEEPER_*
settings: start several, release them at once, collect what each saw — for contention and crash tests, the
benchmarks, and anyone trying a fleet against the simulators.

    outputs = run_workers(env, processes=4, calls=50)  # env: GRANTKEEPER_* of a vault and the simulators
    statuses = [status for output in outputs for status in output["statuses"]]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]

Worker = subprocess.Popen[str]


def spawn_worker(env: dict[str, str], args: list[str]) -> Worker:
    """A worker process (`args`: simulators/fleet_worker.py's), not yet ready: see `release_together`."""
    return subprocess.Popen(
        [sys.executable, "-m", "simulators.fleet_worker", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def release_together(workers: list[Worker]) -> None:
    """Every worker opened the vault and is ready; then all are let go together (a barrier on stdin)."""
    for worker in workers:
        wait_until_ready(worker)
    for worker in workers:
        let_go(worker)


def wait_until_ready(worker: Worker) -> None:
    line = _pipe(worker.stdout).readline()
    if line.strip() != "ready":
        raise RuntimeError(f"worker did not start: {line!r} {_pipe(worker.stderr).read()[-2000:]}")


def let_go(worker: Worker) -> None:
    stdin = _pipe(worker.stdin)
    stdin.write("go\n")
    stdin.flush()


def _pipe(stream: IO[str] | None) -> IO[str]:
    # spawn_worker opens all three pipes; Popen types each as optional.
    if stream is None:
        raise RuntimeError("the worker was started without its pipes")
    return stream


def start_worker(env: dict[str, str], mode: str = "calls", calls: int = 1, lanes: int = 4) -> Worker:
    """One worker, started and ready but not yet let go (`let_go`), for tests that release workers one by one."""
    worker = spawn_worker(env, ["--mode", mode, "--calls", str(calls), "--lanes", str(lanes)])
    try:
        wait_until_ready(worker)
    except BaseException:
        worker.kill()
        raise
    return worker


def output_of(worker: Worker, timeout: float = 180) -> dict[str, Any]:
    """What a worker printed as its last line, once it has finished (it must exit cleanly)."""
    out, err = worker.communicate(timeout=timeout)
    if worker.returncode != 0:
        raise RuntimeError(f"worker failed ({worker.returncode}): {err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run_workers(
    env: dict[str, str],
    processes: int,
    calls: int = 25,
    tool: str = "slack_read_channel",
    arguments: str = '{"channel": "C0GENERAL", "limit": 1}',
    timeout: float = 180,
    mode: str = "calls",
    lanes: int = 4,
) -> list[dict[str, Any]]:
    """`mode="calls"`: each makes `calls` concurrent tool calls. `mode="scheduler"`: each runs its refresh
    scheduler until nothing it can claim is due. `mode="soak"`: each runs its scheduler beside `lanes` lanes of
    sequential calls, `calls` in all."""
    args = ["--mode", mode, "--calls", str(calls), "--lanes", str(lanes), "--tool", tool, "--arguments", arguments]
    workers = [spawn_worker(env, args) for _ in range(processes)]
    try:
        release_together(workers)
        return [output_of(worker, timeout) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


@dataclass(frozen=True)
class Ended:
    returncode: int
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -9


def run_until_it_dies(env: dict[str, str], mode: str, timeout: float = 60) -> Ended:
    """One worker (one tool call, or one scheduler pass) that is expected to SIGKILL itself at a crash point."""
    worker = spawn_worker(env, ["--mode", mode, "--calls", "1"])
    try:
        release_together([worker])
        _, err = worker.communicate(timeout=timeout)
        return Ended(worker.returncode, err)
    finally:
        if worker.poll() is None:
            worker.kill()
