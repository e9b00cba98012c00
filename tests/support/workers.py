"""Start several worker processes, release them at once, collect what each saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _spawn(env: dict[str, str], args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _release(workers: list[subprocess.Popen]) -> None:
    """Every worker opened the vault and is ready; then all are let go together (a barrier on stdin)."""
    for worker in workers:
        wait_until_ready(worker)
    for worker in workers:
        let_go(worker)


def wait_until_ready(worker: subprocess.Popen) -> None:
    line = worker.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"worker did not start: {line!r} {worker.stderr.read()[-2000:]}")


def let_go(worker: subprocess.Popen) -> None:
    worker.stdin.write("go\n")
    worker.stdin.flush()


def start_worker(env: dict[str, str], mode: str = "calls", calls: int = 1, lanes: int = 4) -> subprocess.Popen:
    """One worker, started and ready but not yet let go (`let_go`), for tests that release workers one by one."""
    worker = _spawn(env, ["--mode", mode, "--calls", str(calls), "--lanes", str(lanes)])
    try:
        wait_until_ready(worker)
    except BaseException:
        worker.kill()
        raise
    return worker


def output_of(worker: subprocess.Popen, timeout: float = 180) -> dict:
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
) -> list[dict]:
    """`mode="calls"`: each makes `calls` concurrent tool calls. `mode="scheduler"`: each runs its refresh
    scheduler until nothing it can claim is due. `mode="soak"`: each runs its scheduler beside `lanes` lanes of
    sequential calls, `calls` in all."""
    args = ["--mode", mode, "--calls", str(calls), "--lanes", str(lanes), "--tool", tool, "--arguments", arguments]
    workers = [_spawn(env, args) for _ in range(processes)]
    try:
        _release(workers)
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
    worker = _spawn(env, ["--mode", mode, "--calls", "1"])
    try:
        _release([worker])
        _, err = worker.communicate(timeout=timeout)
        return Ended(worker.returncode, err)
    finally:
        if worker.poll() is None:
            worker.kill()
