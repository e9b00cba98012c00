"""The triage agent against grantkeeper in memory (the real MCP client and server, simulators on loopback): what
it does with each result status, with hostile messages, and with a state file it cannot trust."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.triage_agent.agent import MAX_TITLE, NOTICE_PREFIX, AgentConfig, TriageAgent, issue_title
from examples.triage_agent.state import MAX_STATE_BYTES, AgentState, StateError, StateFile
from examples.triage_agent.world import BUG_CHANNEL, OPS_CHANNEL, REPO, Reporters, audit
from simulators.person import link_user
from simulators.seeding import seed_account
from tests.support.mcp import mcp_client
from tests.support.web import outcome_of, web_server

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """The agent's clock, moved by the test: waits are decided, never slept through."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _agent(client, tmp_path: Path, clock: Clock, **config) -> TriageAgent:
    return TriageAgent(
        client,
        AgentConfig(channel=BUG_CHANNEL, repo=REPO, state_path=tmp_path / "state.json", owner_channel=OPS_CHANNEL, **config),
        clock=clock,
    )


async def test_reports_are_queued_while_github_needs_its_owner_and_filed_after_the_reconnect(
    runtime, settings, slack_sim, github_sim, tmp_path
):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    # The agent's first-time GitHub link is opened over HTTP without sign-in; who may open it is tests/identity's.
    runtime.settings.allow_unverified_connect_links = True
    slack_sim.add_channel(OPS_CHANNEL, "triage-ops")
    reporters = Reporters(slack_sim, chatter_every=3)
    for _ in range(4):
        reporters.post_one()
    clock = Clock()
    async with web_server(runtime, transports=("http",)), mcp_client(runtime) as client:
        agent = _agent(client, tmp_path, clock, reauth_check_seconds=30)
        await agent.step()
        assert agent.pending == 3 and agent.stats.reports_seen == 3  # chatter left alone
        assert agent.blocks["github"].status == "reauth_required"
        notices = [m for m in slack_sim.messages(OPS_CHANNEL) if m["text"].startswith(NOTICE_PREFIX)]
        assert len(notices) == 1 and "/connect/" in notices[0]["text"]

        reporters.post_one()  # a fourth bug report arrives while GitHub is disconnected
        await agent.step()
        assert agent.pending == 4 and agent.stats.read_while_github_blocked == 1
        assert agent.stats.calls["github_create_issue reauth_required"] == 1  # not retried before its time

        async with link_user() as owner:  # the owner opens the link the agent showed, approves at GitHub
            page = await owner.reconnect(agent.blocks["github"].link)
        assert outcome_of(page) == "reconnected"
        clock.now += 30
        await agent.step()
    assert agent.pending == 0 and agent.stats.reconnects == 1 and agent.stats.reauth_notices == 1
    assert len([m for m in slack_sim.messages(OPS_CHANNEL) if m["text"].startswith(NOTICE_PREFIX)]) == 1
    assert audit(slack_sim, github_sim, reporters.seeded).clean
    assert agent.stats.blocked_seconds["github"] == 30


async def test_rate_limits_and_outages_are_waited_out_with_the_results_hints(
    runtime, settings, slack_sim, github_sim, tmp_path, monkeypatch
):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    reporters = Reporters(slack_sim, chatter_every=1000)
    reporters.post_one()
    clock = Clock()
    github_sim.rate_limit(count=1, retry_after=42)  # longer than grantkeeper waits itself: the agent gets it
    async with mcp_client(runtime) as client:
        agent = _agent(client, tmp_path, clock)
        await agent.step()
        block = agent.blocks["github"]
        assert block.status == "rate_limited" and block.until == clock.now + 42
        await agent.step()
        assert agent.stats.calls["github_create_issue rate_limited"] == 1  # still waiting: no call made

        clock.now += 42
        slack_sim.outage(3600)
        await agent.step()  # the issue is filed; the reply and the next read meet the outage
        assert agent.blocks["slack"].status == "upstream_error" and agent.pending == 1
        slack_sim.outage(0)
        clock.now = agent.blocks["slack"].until
        await agent.step()
    assert agent.pending == 0 and "slack" not in agent.blocks, (agent.stats.calls, agent.blocks, agent.state)
    assert agent.stats.retries >= 2 and agent.stats.exceptions == 0
    assert audit(slack_sim, github_sim, reporters.seeded).clean


async def test_hostile_messages_are_filed_within_bounds(runtime, settings, slack_sim, github_sim, tmp_path):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    huge = "bug: " + "x" * 39_000 + "\n" * 990
    newlines = "error\n" * 6_000
    for text in (huge, newlines, "crash <script>alert(1)</script> `rm -rf /` ${HOME} \u202e"):
        slack_sim.seed_message(BUG_CHANNEL, text)
    async with mcp_client(runtime) as client:
        agent = _agent(client, tmp_path, Clock())
        await agent.step()
    assert agent.pending == 0 and not agent.state.failed
    issues = github_sim.issues(REPO)
    assert len(issues) == 3
    assert all(len(issue["title"]) <= MAX_TITLE and len(issue["body"]) < 65_536 for issue in issues)


def test_titles_are_one_short_line():
    assert issue_title("Bug: checkout fails\nmore detail") == "Checkout fails"
    assert issue_title("   \n\n") == "Bug report from Slack"
    assert len(issue_title("error " * 100)) == MAX_TITLE


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"version": 99}',
        b'{"version": 1, "queue": [{"x": 1}]}',
        b"\xff\xfe",
        b'{"version": 1, "queue": "abc"}',
        b'{"version": 1, "cursor": "../../etc"}',
        b'{"version": 1, "cursor": 17}',
        b'{"version": 1, "queue": [{"channel": "C1", "ts": "x", "user": null, "text": ""}]}',
    ],
)
def test_a_state_file_that_cannot_be_trusted_stops_the_agent_before_any_call(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError):
        StateFile(path).load()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.triage_agent",
            "--channel",
            BUG_CHANNEL,
            "--repo",
            REPO,
            "--state",
            str(path),
            "--url",
            "http://127.0.0.1:9/mcp",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRIAGE_API_KEY": "gk_test"},
    )
    assert done.returncode != 0 and path.read_bytes() == content  # left as it was, for a person to look at


def test_a_huge_state_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "state.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_STATE_BYTES + 1)
    with pytest.raises(StateError, match="larger than"):
        StateFile(path).load()


def test_state_is_replaced_atomically_and_leaves_no_temporary_files(tmp_path):
    store = StateFile(tmp_path / "nested" / "state.json")
    state = AgentState(cursor="1700000000.000100")
    store.save(state)
    store.save(state)
    assert json.loads((tmp_path / "nested" / "state.json").read_text())["cursor"] == "1700000000.000100"
    assert [p.name for p in (tmp_path / "nested").iterdir()] == ["state.json"]
    assert store.load().cursor == "1700000000.000100"


def test_the_command_line_wants_the_api_key_in_a_variable_not_an_argument(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.triage_agent",
            "--channel",
            BUG_CHANNEL,
            "--repo",
            REPO,
            "--state",
            str(tmp_path / "s.json"),
            "--url",
            "http://127.0.0.1:9/mcp",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "TRIAGE_API_KEY"},
    )
    assert done.returncode == 2 and "TRIAGE_API_KEY" in done.stderr
