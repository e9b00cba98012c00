"""A provider answer is read within its connector's bound, counted while streaming in compressed and in
decompressed bytes: a gzip bomb and a 200 MiB body are refused as `response_too_large` without being buffered.
Memory is measured in a separate process (tests/support/bounded_read_probe.py), whose peak only grantkeeper moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024
BOUND = MIB  # GRANTKEEPER_SLACK_MAX_RESPONSE_BYTES in the probe: the per-connector setting
PEAK_GROWTH_LIMIT_KIB = 4 * 1024


def run_probe(faults: list[dict]) -> list[dict]:
    env = {**os.environ, "GRANTKEEPER_SLACK_MAX_RESPONSE_BYTES": str(BOUND), "PROBE_FAULTS": json.dumps(faults)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.bounded_read_probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the measured growth, for the reader of the test output
    return report


def test_a_gzip_bomb_and_an_endless_body_are_refused_without_being_buffered(runtime_sync, settings, slack_sim):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant())
    bomb = {"fault": "gzip_bomb", "inflated_bytes": 128 * MIB}  # ~130 KB on the wire
    endless = {"fault": "huge_answer", "size": 200 * MIB}  # streamed by the simulator, chunked, no Content-Length

    # One process per answer, so each growth is measured from the same warm, clean start.
    reports = [run_probe([bomb]), run_probe([endless])]

    for report in reports:
        assert report[0] == {"fault": None, "status": "ok"}
        measured = report[1]
        assert (measured["status"], measured["reason"]) == ("upstream_error", "response_too_large"), measured
        assert measured["peak_growth_kib"] < PEAK_GROWTH_LIMIT_KIB, measured
    assert slack_sim.counters.hostile_answers == 2
    # The endless body was left unread, not drained (the simulator notices the closed connection on its own thread).
    assert slack_sim.counters.wait_for("answers_abandoned", 1)


async def test_the_bound_is_per_connector_and_a_bounded_answer_still_reads(runtime, settings, slack_sim, monkeypatch):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    assert runtime.connectors["slack"].max_response_bytes == settings.max_response_bytes == 10 * MIB
    slack_sim.huge_answer(count=1, size=11 * MIB)
    async with mcp_client(runtime) as client:
        too_large = await call(client, "slack_read_channel", {"channel": "C0GENERAL"})
        fine = await call(client, "slack_read_channel", {"channel": "C0GENERAL"})
    assert too_large == {**too_large, "status": "upstream_error", "reason": "response_too_large", "retryable": False}
    assert fine["status"] == "ok"


def test_a_connector_bound_comes_from_its_own_setting(env, monkeypatch):
    from server.connectors import load_connectors
    from server.settings import Settings

    monkeypatch.setenv("GRANTKEEPER_GITHUB_MAX_RESPONSE_BYTES", str(2 * MIB))
    connectors = load_connectors(Settings())
    assert connectors["github"].max_response_bytes == 2 * MIB
    assert connectors["slack"].max_response_bytes == 10 * MIB


async def test_an_ordinary_answer_declared_larger_than_the_bound_is_refused_unread(env, slack_sim, monkeypatch):
    from server.runtime import Runtime
    from server.settings import Settings

    monkeypatch.setenv("GRANTKEEPER_SLACK_MAX_RESPONSE_BYTES", "4096")
    for number in range(20):
        slack_sim.seed_message("C0GENERAL", f"message {number} " + "x" * 400)
    runtime = Runtime.open(Settings())
    try:
        seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant())
        async with mcp_client(runtime) as client:
            small = await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": 1})
            large = await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": 20})
    finally:
        await runtime.aclose()

    assert small["status"] == "ok"  # ~600 bytes with Content-Length: read
    assert large == {
        **large,
        "status": "upstream_error",
        "reason": "response_too_large",
        "retryable": False,
        "outcome_unknown": False,
    }
    assert "4096 bytes" in large["next_step"]
