"""Killing the triage agent (SIGKILL, with its grantkeeper child) at the worst moments — after GitHub created the
issue, after Slack stored the reply, before the agent heard either — and starting it again files every report
exactly once and answers it exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from examples.triage_agent.world import BUG_CHANNEL, REPO, Reporters, audit
from simulators.seeding import seed_account
from tests.support.holds import HoldAnswer

ROOT = Path(__file__).resolve().parents[2]


def _start_agent(state: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "GRANTKEEPER_LISTEN_PORT": "0", "GRANTKEEPER_LOG_LEVEL": "warning"}
    command = [
        sys.executable,
        "-m",
        "examples.triage_agent",
        "--channel",
        BUG_CHANNEL,
        "--repo",
        REPO,
        "--state",
        str(state),
        "--poll-seconds",
        "0.2",
        "--json",
        "--exit-when-idle",
        "3",
    ]
    # Its own process group, so one SIGKILL takes the agent and the `grantkeeper serve` it started.
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("a"), text=True, start_new_session=True
    )


def _kill_when(agent: subprocess.Popen, hold: HoldAnswer) -> list[dict]:
    assert hold.processed.wait(120), "the held write never arrived"
    os.killpg(agent.pid, signal.SIGKILL)
    out, _ = agent.communicate(timeout=30)
    hold.release.set()
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_sigkill_mid_write_then_restart_files_and_answers_every_report_exactly_once(
    tmp_path, runtime_sync, settings, slack_server, github_server, slack_sim, github_sim
):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant())
    seed_account(settings, runtime_sync.vault, "github", github_sim.issue_grant())
    reporters = Reporters(slack_sim, BUG_CHANNEL, chatter_every=1000)
    for _ in range(5):
        reporters.post_one()
    state, log = tmp_path / "agent-state.json", tmp_path / "agent.log"

    # Run 1 dies after GitHub stored the second issue, before the answer reached the agent.
    github_server.app = hold = HoldAnswer(github_sim, "POST", "/issues", nth=2)
    first = _kill_when(_start_agent(state, log), hold)
    github_server.app = github_sim
    assert len(github_sim.issues(REPO)) == 2
    assert [e["number"] for e in first if e["event"] == "issue_filed"] == [1]

    # Run 2 finds that issue by its idempotency key, then dies after Slack stored its second reply.
    slack_server.app = hold = HoldAnswer(slack_sim, "POST", "/chat.postMessage", nth=2)
    second = _kill_when(_start_agent(state, log), hold)
    slack_server.app = slack_sim
    refound = [e for e in second if e["event"] == "issue_filed" and e["ts"] == reporters.seeded[1].ts]
    assert refound and refound[0]["created"] is False

    # Run 3 runs until idle: it finds the stored reply instead of posting it again, and finishes the rest.
    last = _start_agent(state, log)
    out, _ = last.communicate(timeout=180)
    assert last.returncode == 0, out[-2000:] + log.read_text()[-3000:]
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(e["event"] == "reply_posted" and e["posted"] is False for e in events)
    stopped = events[-1]
    assert stopped["event"] == "stopped" and stopped["pending"] == 0 and stopped["exceptions"] == 0

    result = audit(slack_sim, github_sim, reporters.seeded)
    assert (result.bug_reports, result.issues, result.replies) == (5, 5, 5)
    assert result.clean, result
    assert sorted(issue["number"] for issue in github_sim.issues(REPO)) == [1, 2, 3, 4, 5]
