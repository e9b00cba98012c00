"""The soak: two `grantkeeper serve` worker processes share one vault (an SQLite file, and a PostgreSQL schema);
three triage agents (two of them on the same user's grants, through different workers) run for at least 100
token lifetimes of both providers through the fault timeline — tokens killed, a 429 burst, a flaky token
endpoint, lost write answers, a Slack outage, a revocation answered through the link. Proven by counting: every
call answered with a structured status, nothing escaped to an agent, no report lost or handled twice, no refresh
token used twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from examples.triage_agent.agent import AgentConfig, TriageAgent
from examples.triage_agent.connect import http_session
from examples.triage_agent.world import Fault, Owner, Reporters, audit, fault_timeline, play, refreshes_by_trigger
from server.auth import create_api_key
from simulators import GitHubSimulator
from simulators.seeding import seed_account
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - SQLite and PostgreSQL

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
LIFETIME = 0.7  # seconds an access token lives at both simulators
LIFETIMES = 100  # the soak lasts until each grant was rotated this many times at each provider
STRUCTURED = {"ok", "rate_limited", "upstream_error", "reauth_required"}
SEARCHES_PER_MINUTE = 1000


class Worker:
    """`grantkeeper serve --transport http` in its own process; its log goes to a file, its URL is read from it."""

    def __init__(self, env: dict[str, str], log: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = log
        self.url: str | None = None
        self.started = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        with self.log.open("w") as log:
            for line in self.process.stderr:
                log.write(line)
                if self.url is None and '"http_server_started"' in line:
                    self.url = json.loads(line)["url"]
                    self.started.set()
        self.started.set()

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=30)


@pytest.fixture
def workers(env, tmp_path):
    fleet_env = {
        **os.environ,
        "GRANTKEEPER_LOG_FORMAT": "json",
        "GRANTKEEPER_LOG_LEVEL": "info",
        "GRANTKEEPER_MANDATORY_REFRESH_SECONDS": f"{LIFETIME * 0.15:g}",
        "GRANTKEEPER_TOKEN_CACHE_SECONDS": f"{LIFETIME * 0.1:g}",
        "GRANTKEEPER_SCHEDULER_POLL_SECONDS": f"{LIFETIME * 3:g}",
        "GRANTKEEPER_REFRESH_TIMEOUT_SECONDS": "5",
        "GRANTKEEPER_RATE_LIMIT_MAX_WAIT_SECONDS": "0.5",
        "GRANTKEEPER_HEALTH_CHECKS_ENABLED": "false",
    }
    fleet = [Worker(fleet_env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    for worker in fleet:
        assert worker.started.wait(60) and worker.url, worker.log.read_text()[-2000:]
    yield fleet
    for worker in fleet:
        assert worker.stop() == 0, worker.log.read_text()[-2000:]


async def test_two_workers_three_agents_a_hundred_token_lifetimes_of_faults_lose_and_repeat_nothing(
    runtime_sync, settings, slack_sim, github_server, workers, tmp_path
):
    # Every idempotent create searches first; GitHub's 30 searches a minute would make this a test of waiting.
    github_server.app = github_sim = GitHubSimulator(search_limit=SEARCHES_PER_MINUTE)
    vault = runtime_sync.vault
    for simulator in (slack_sim, github_sim):
        simulator.set_access_ttl(LIFETIME)
    grants = {}
    for user, github_id in (("alice", 1), ("bob", 2)):
        seed_account(settings, vault, "slack", slack_sim.issue_grant(access_ttl=LIFETIME), user=user)
        grants[user] = github_sim.issue_grant({"login": user, "id": github_id}, access_ttl=LIFETIME)
        seed_account(settings, vault, "github", grants[user], user=user, provider_account_id=str(github_id))
    keys = {user: create_api_key(vault, org="acme", user=user).key for user in ("alice", "bob")}
    plan = [  # (user, worker, channel, repo): alice's grants are used through both workers at once
        ("alice", workers[0], "C0BUGSA", "acme/alpha"),
        ("alice", workers[1], "C0BUGSB", "acme/beta"),
        ("bob", workers[1], "C0BUGSC", "acme/gamma"),
    ]
    reporters = [Reporters(slack_sim, channel) for _, _, channel, _ in plan]
    for _, _, channel, repo in plan:
        slack_sim.add_channel(channel, channel.lower())
        github_sim.add_repo(repo)
    owner = Owner(delay_seconds=4 * LIFETIME)  # alice, answering the first link any of her agents shows her
    timeline = [
        *fault_timeline(slack_sim, github_sim, LIFETIME, revoke=False),
        Fault(
            13,
            "alice_github_revoked",
            "alice's GitHub grant is revoked",
            lambda: github_sim.revoke(grant_id=grants["alice"].grant_id),
        ),
    ]
    connected: dict[int, TriageAgent] = {}
    stop, everyone_connected = anyio.Event(), anyio.Event()

    async def run_agent(index: int) -> None:
        user, worker, channel, repo = plan[index]
        config = AgentConfig(
            channel=channel,
            repo=repo,
            state_path=tmp_path / f"agent-{index}.json",
            poll_seconds=LIFETIME / 2,
            reauth_check_seconds=LIFETIME,
            backoff_first_seconds=0.2,
            backoff_max_seconds=2 * LIFETIME,
        )
        async with http_session(f"{worker.url}/mcp", keys[user]) as session:
            observe = owner.observe if user == "alice" else None
            agent = TriageAgent(session, config, observe=observe)
            connected[index] = agent
            if len(connected) == len(plan):
                everyone_connected.set()
            await agent.run(stop)

    def rotations() -> int:
        # Each provider rotated each of the two users' grants about once per lifetime.
        return min(slack_sim.counters.refreshes_ok, github_sim.counters.refreshes_ok) // 2

    async with anyio.create_task_group() as group:
        for index in range(len(plan)):
            group.start_soon(run_agent, index)
        group.start_soon(owner.run)
        with anyio.fail_after(60):
            await everyone_connected.wait()
        agents = [connected[index] for index in range(len(plan))]
        group.start_soon(play, timeline, LIFETIME, lambda fault: None, time.monotonic)
        with anyio.fail_after(300):
            while rotations() < LIFETIMES:
                for reporter in reporters:
                    reporter.post_one()
                await anyio.sleep(LIFETIME)
        seeded_at = time.monotonic()
        with anyio.move_on_after(120):
            while any(a.pending or a.state.cursor != r.seeded[-1].ts for a, r in zip(agents, reporters, strict=True)):
                await anyio.sleep(0.1)
        drained_after = time.monotonic() - seeded_at
        stop.set()
        group.cancel_scope.cancel()

    triggers = refreshes_by_trigger(vault)
    print(
        f"\nsoak: {rotations()} token lifetimes; refreshes by trigger: {dict(sorted(triggers.items()))}; "
        f"slack {slack_sim.counters.snapshot()}; github {github_sim.counters.snapshot()}"
    )
    for agent in agents:
        print(f"agent {agent.config.channel}: {agent.stats.as_dict()}")

    for agent, reporter in zip(agents, reporters, strict=True):
        print(
            f"agent {agent.config.channel}: pending {agent.pending}, cursor {agent.state.cursor} of "
            f"{reporter.seeded[-1].ts}, blocks {agent.blocks}"
        )
    print(f"drained {drained_after:.1f} s after the last report")
    assert all(agent.stats.exceptions == 0 for agent in agents)
    statuses = {key.split(" ")[1] for agent in agents for key in agent.stats.calls}
    assert statuses <= STRUCTURED, statuses
    for (_, _, _, repo), reporter in zip(plan, reporters, strict=True):
        result = audit(slack_sim, github_sim, reporter.seeded, repo)
        assert result.clean and result.issues == result.bug_reports > 10, (repo, result)
    assert slack_sim.counters.reuse_detections == 0 and github_sim.counters.reuse_detections == 0
    # Several users' agents share each worker's pools: no answer's cookie ever rode on a later request.
    assert slack_sim.counters.cookies_presented == 0 and github_sim.counters.cookies_presented == 0
    assert owner.reconsents == 1
    alice_agents = [a for a, (user, *_) in zip(agents, plan, strict=True) if user == "alice"]
    assert sum(a.stats.read_while_github_blocked for a in alice_agents) >= 1
    assert all(a.stats.reconnects >= 1 for a in alice_agents)
    assert {str(getattr(a.status, "value", a.status)) for a in vault.accounts.all("acme")} == {"active"}
    assert triggers["reactive"] >= 1 and triggers["proactive"] + triggers["scheduled"] >= LIFETIMES
