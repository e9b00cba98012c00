"""`grantkeeper demo`: the triage agent runs for a long stretch against the Slack and GitHub simulators, on tokens
that live for seconds, through a timeline of faults — and the summary proves that every bug report became
exactly one GitHub issue and one thread reply. Exits non-zero if any report was lost or handled twice."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from examples.triage_agent.agent import GITHUB, SLACK, AgentConfig, TriageAgent
from examples.triage_agent.connect import stdio_session
from examples.triage_agent.world import (
    BUG_CHANNEL,
    BUG_CHANNEL_NAME,
    OPS_CHANNEL,
    OPS_CHANNEL_NAME,
    REPO,
    Audit,
    Fault,
    Owner,
    Reporters,
    audit,
    fault_timeline,
    play,
    prepare,
    refreshes_by_trigger,
)
from simulators import GitHubSimulator, SimulatorServer, SlackSimulator
from simulators.environment import simulator_environment

ROOT = Path(__file__).resolve().parents[2]
PLAINTEXT_PREFIXES = (b"xoxe", b"ghu_", b"ghr_")
DRAIN_DEADLINE_SECONDS = 40  # after the last report, for the queue to empty (a busy machine is slow)


@dataclass(frozen=True)
class Plan:
    lifetime: float  # seconds an access token lives, at both providers
    lifetimes: int  # how long reports keep coming, in token lifetimes
    report_every: float  # seconds between two messages in #bug-reports
    owner_delay: float  # seconds the owner takes to answer the reconnect link
    fault_cycles: int  # how often the whole fault timeline is played, one every 30 token lifetimes

    @classmethod
    def choose(cls, fast: bool) -> Plan:
        if fast:
            return cls(lifetime=1.0, lifetimes=21, report_every=0.7, owner_delay=3.0, fault_cycles=1)
        # A report every 2.5 s keeps the idempotent creates' searches under GitHub's 30 a minute.
        return cls(lifetime=2.0, lifetimes=110, report_every=2.5, owner_delay=6.0, fault_cycles=4)


@dataclass
class Progress:
    started: float
    log: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    github_blocked_at: float | None = None
    reconnected_after: float | None = None

    def note(self, line: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s  {line}")
        del self.log[:-8]


def run_demo(fast: bool = False) -> int:
    logging.getLogger("grantkeeper.simulators").setLevel(logging.WARNING)
    plan = Plan.choose(fast)
    # Not a terminal (CI, a pipe): plain timestamped lines instead of the live view, wide enough not to wrap.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    with (
        tempfile.TemporaryDirectory(prefix="grantkeeper-demo-") as home,
        SimulatorServer(SlackSimulator()) as slack_server,
        SimulatorServer(GitHubSimulator()) as github_server,
    ):
        slack, github = slack_server.app, github_server.app
        prepare(slack, github, plan.lifetime, [(BUG_CHANNEL, BUG_CHANNEL_NAME), (OPS_CHANNEL, OPS_CHANNEL_NAME)])
        env = _server_environment(home, slack_server.url, github_server.url, plan.lifetime)
        console.print(
            f"[bold]grantkeeper demo[/] — a triage agent files Slack bug reports as GitHub issues, through "
            f"grantkeeper, while its tokens expire every {plan.lifetime:g} s and the providers misbehave."
        )
        console.print(f"   Slack simulator {slack_server.url}  ·  GitHub simulator {github_server.url}  ·  vault {home}\n")
        console.print("alice connects her accounts (tokens she already holds, imported with `grantkeeper accounts add`):")
        for stored in _import_tokens(
            env,
            {
                connector: simulator.issue_grant(access_ttl=plan.lifetime)
                for connector, simulator in (("slack", slack), ("github", github))
            },
        ):
            console.print("   " + stored.replace("\n", "; "))
        console.print(
            f"The agent runs as an MCP client of `grantkeeper serve` (stdio), watches #{BUG_CHANNEL_NAME}, "
            f"files to {REPO} and never sees a token.\n"
        )
        with (Path(home) / "server.log").open("w") as server_log:
            outcome = anyio.run(_run, plan, env, home, slack, github, server_log, console)
        vault_bytes = b"".join(p.read_bytes() for p in Path(home).glob("grantkeeper.db*"))
        outcome.leaked = any(prefix in vault_bytes for prefix in PLAINTEXT_PREFIXES)
        outcome.vault_bytes = len(vault_bytes)
        return _summarise(console, plan, outcome)


def _server_environment(home: str, slack_url: str, github_url: str, lifetime: float) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRANTKEEPER_")}
    return {
        **env,
        **simulator_environment(slack_url, github_url),
        "GRANTKEEPER_HOME": home,
        "GRANTKEEPER_ORG": "acme",
        "GRANTKEEPER_USER": "alice",
        "GRANTKEEPER_LOG_LEVEL": "warning",
        "GRANTKEEPER_LOG_FORMAT": "console",
        "GRANTKEEPER_LISTEN_PORT": "0",  # the reconnect pages, beside stdio on a free loopback port
        # Short lifetimes need proportionally short windows: must refresh in the last tenth of a lifetime.
        "GRANTKEEPER_MANDATORY_REFRESH_SECONDS": f"{lifetime * 0.1:g}",
        "GRANTKEEPER_TOKEN_CACHE_SECONDS": f"{lifetime * 0.1:g}",
        # The scheduler catches grants nobody is using; the agent's own calls refresh the busy ones (proactive).
        "GRANTKEEPER_SCHEDULER_POLL_SECONDS": f"{3 * lifetime:g}",
        "GRANTKEEPER_REFRESH_TIMEOUT_SECONDS": "5",
        "GRANTKEEPER_RETRY_INITIAL_WAIT_SECONDS": "0.05",
        "GRANTKEEPER_RETRY_MAX_WAIT_SECONDS": "0.5",
        # Longer waits go back to the agent as rate_limited, so it can do other work meanwhile.
        "GRANTKEEPER_RATE_LIMIT_MAX_WAIT_SECONDS": "0.5",
    }


def _import_tokens(env: dict[str, str], grants: dict[str, Any]) -> list[str]:
    """`grantkeeper accounts add <connector>` for each grant, side by side."""
    children = {}
    for connector, tokens in grants.items():
        payload = {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_in": tokens.expires_in,
            "refresh_token_expires_in": tokens.refresh_token_expires_in,
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "server", "accounts", "add", connector],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children[connector] = (child, json.dumps(payload))
    stored = []
    for connector, (child, answers) in children.items():
        out, err = child.communicate(answers, timeout=120)
        if child.returncode != 0:
            raise RuntimeError(f"accounts add {connector} failed: {err[-500:]}")
        stored.append(out.strip())
    return stored


@dataclass
class Outcome:
    agent: TriageAgent
    audit: Audit
    owner: Owner
    progress: Progress
    elapsed: float
    statuses: dict[str, str]
    refreshes: Counter[str]
    simulator_stats: dict[str, dict[str, Any]]
    leaked: bool = False
    vault_bytes: int = 0

    @property
    def answers_lost(self) -> int:
        """Writes the providers carried out but whose answers they dropped (the timeline's targeted faults)."""
        injected = 2 * self.progress.faults.count("answers_lost")
        return injected - sum(stats["faults"]["failures_pending"] for stats in self.simulator_stats.values())


async def _run(
    plan: Plan, env: dict[str, str], home: str, slack: SlackSimulator, github: GitHubSimulator, server_log: Any, console: Console
) -> Outcome:
    from server.runtime import open_vault
    from server.settings import Settings

    vault, _ = open_vault(Settings(home=Path(home), database_url=None, vault_key=None))
    progress = Progress(started=time.monotonic())
    owner = Owner(plan.owner_delay)
    reporters = Reporters(slack)
    live_view = console.is_terminal

    def observe(kind: str, detail: dict[str, Any]) -> None:
        owner.observe(kind, detail)
        if kind == "reauth_required":
            progress.github_blocked_at = time.monotonic()
            _say(
                f"{detail['connector']} answered reauth_required ({detail['reason']}): the agent prints the link for "
                f"the owner and posts it to #{OPS_CHANNEL_NAME}; it keeps reading Slack and queues the reports"
            )
        elif kind == "reconnected":
            progress.reconnected_after = detail["blocked_seconds"]
            _say(f"{detail['connector']} works again after {detail['blocked_seconds']:.1f} s: the agent drains its queue")
        elif kind == "blocked" and detail["status"] != "reauth_required":
            progress.note(f"{detail['connector']}: {detail['status']} ({detail['reason']}), waits {detail['wait']:.1f} s")

    def on_fault(fault: Fault) -> None:
        progress.faults.append(fault.name)
        _say(f"[yellow]fault[/]: {fault.description}")

    def _say(line: str) -> None:
        progress.note(line)
        if not live_view:
            console.print(f"{time.monotonic() - progress.started:6.1f}s  {line}")

    config = AgentConfig(
        channel=BUG_CHANNEL,
        repo=REPO,
        state_path=Path(home) / "triage-agent.json",
        owner_channel=OPS_CHANNEL,
        poll_seconds=plan.lifetime / 3,
        reauth_check_seconds=plan.lifetime,
        backoff_first_seconds=0.25,
        backoff_max_seconds=2 * plan.lifetime,
    )
    async with stdio_session(env=env, cwd=str(ROOT), errlog=server_log) as session:
        progress.started = time.monotonic()  # the clock starts with the agent, not with the server's start-up
        agent = TriageAgent(session, config, observe=observe)
        stop = anyio.Event()

        async def report_steadily() -> None:
            until = progress.started + plan.lifetimes * plan.lifetime
            hard_stop = until + max(30 * plan.lifetime, 30.0)

            def more_to_show() -> bool:
                # Reports keep coming while GitHub waits for its owner, so the agent is seen reading and queueing
                # then — however late the timeline let it notice the revocation.
                revoked = "github_revoked" in progress.faults
                return "github" in agent.blocks or (revoked and agent.stats.read_while_github_blocked == 0)

            while time.monotonic() < until or (time.monotonic() < hard_stop and more_to_show()):
                reporters.post_one()
                await anyio.sleep(plan.report_every)

        async def run_agent() -> None:
            await agent.run(stop)

        async def refresh_view(live: Live | None) -> None:
            last_line = 0.0
            while True:
                if live is not None:
                    live.update(_view(plan, agent, reporters, progress, slack, github, vault))
                elif time.monotonic() - last_line >= 10 * plan.lifetime:
                    last_line = time.monotonic()
                    console.print(f"{time.monotonic() - progress.started:6.1f}s  " + _progress_line(agent, reporters))
                await anyio.sleep(0.25)

        with Live(console=console, refresh_per_second=4, transient=False) if live_view else _NoLive() as live:
            async with anyio.create_task_group() as group:
                group.start_soon(run_agent)
                group.start_soon(owner.run)
                group.start_soon(
                    play,
                    fault_timeline(slack, github, plan.lifetime, cycles=plan.fault_cycles),
                    plan.lifetime,
                    on_fault,
                    time.monotonic,
                )
                group.start_soon(refresh_view, live)
                await report_steadily()
                _say("reports stop coming; the agent finishes its queue")
                with anyio.move_on_after(max(20 * plan.lifetime, DRAIN_DEADLINE_SECONDS)):
                    while agent.pending or not _caught_up(agent, reporters):
                        await anyio.sleep(0.1)
                stop.set()
                await anyio.sleep(0)
                group.cancel_scope.cancel()
            if live is not None:
                live.update(_view(plan, agent, reporters, progress, slack, github, vault))
    statuses = {
        a.connector: str(a.status.value if hasattr(a.status, "value") else a.status) for a in vault.accounts.all("acme", "alice")
    }
    return Outcome(
        agent=agent,
        audit=audit(slack, github, reporters.seeded),
        owner=owner,
        progress=progress,
        elapsed=time.monotonic() - progress.started,
        statuses=statuses,
        refreshes=refreshes_by_trigger(vault),
        simulator_stats={"slack": slack.stats(), "github": github.stats()},
    )


class _NoLive:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _caught_up(agent: TriageAgent, reporters: Reporters) -> bool:
    last = reporters.seeded[-1].ts if reporters.seeded else None
    return last is None or (agent.state.cursor is not None and float(agent.state.cursor) >= float(last))


def _progress_line(agent: TriageAgent, reporters: Reporters) -> str:
    s = agent.stats
    return (
        f"messages posted {len(reporters.seeded)}, bug reports seen {s.reports_seen}, issues "
        f"{s.issues_created + s.issues_found_existing}, replies {s.replies_posted + s.replies_found_existing}, "
        f"queued {agent.pending}, retries {s.retries}"
    )


def _view(
    plan: Plan,
    agent: TriageAgent,
    reporters: Reporters,
    progress: Progress,
    slack: SlackSimulator,
    github: GitHubSimulator,
    vault: Any,
) -> Group:
    elapsed = time.monotonic() - progress.started
    accounts = Table(
        title=f"Accounts — {elapsed:.0f} s, {elapsed / plan.lifetime:.0f} token lifetimes of {plan.lifetime:g} s", expand=True
    )
    for column in ("account", "vault status", "agent sees", "refreshes ok", "refresh failures", "reuse detected"):
        accounts.add_column(column)
    statuses = {a.connector: str(getattr(a.status, "value", a.status)) for a in vault.accounts.all("acme", "alice")}
    for connector, simulator in ((SLACK, slack), (GITHUB, github)):
        block = agent.blocks.get(connector)
        sees = "[green]working[/]" if block is None else f"[red]{block.status}[/] ({block.reason})"
        status = statuses.get(connector, "?")
        colour = "green" if status == "active" else "red"
        counters = simulator.counters
        accounts.add_row(
            f"acme/alice/{connector}",
            f"[{colour}]{status}[/]",
            sees,
            str(counters.refreshes_ok),
            str(counters.refresh_failures),
            str(counters.reuse_detections),
        )
    work = Table.grid(padding=(0, 2))
    s = agent.stats
    for label, value in (
        ("messages posted in #bug-reports", len(reporters.seeded)),
        ("bug reports seen", s.reports_seen),
        ("GitHub issues filed", s.issues_created + s.issues_found_existing),
        ("thread replies posted", s.replies_posted + s.replies_found_existing),
        ("queued (waiting for a connector)", agent.pending),
        ("calls waited out (rate limit, outage)", s.retries),
    ):
        work.add_row(label, str(value))
    return Group(accounts, Panel(work, title="Agent"), Panel("\n".join(progress.log) or "…", title="What happened"))


def _summarise(console: Console, plan: Plan, outcome: Outcome) -> int:
    found, stats = outcome.audit, outcome.agent.stats
    lifetimes = outcome.elapsed / plan.lifetime
    reuse = sum(s["reuse_detections"] for s in outcome.simulator_stats.values())
    lost_grants = [c for c, status in outcome.statuses.items() if status != "active"]
    refreshes = outcome.refreshes
    blocked = ", ".join(f"{c} {secs:.1f} s" for c, secs in sorted(stats.blocked_seconds.items())) or "none"
    rate_limited = sum(n for key, n in stats.calls.items() if key.endswith(" rate_limited"))
    upstream = sum(n for key, n in stats.calls.items() if key.endswith(" upstream_error"))
    checks = [
        (
            not found.lost,
            f"every bug report filed and answered: {found.bug_reports} reports → {found.issues} issues, "
            f"{found.replies} thread replies" + (f" (LOST: {len(found.lost)})" if found.lost else ""),
        ),
        (
            not found.duplicate_issues and not found.duplicate_replies,
            f"no duplicates: {found.duplicate_issues} duplicate issues, {found.duplicate_replies} duplicate replies, "
            f"though {outcome.answers_lost} write answer(s) were lost by the providers and found again by their "
            "idempotency markers",
        ),
        (not found.chatter_filed, f"chatter left alone: {found.chatter} messages, {found.chatter_filed} filed"),
        (not lost_grants, "no grant lost: " + ", ".join(f"{c} {s}" for c, s in sorted(outcome.statuses.items()))),
        (
            outcome.owner.reconsents == outcome.progress.faults.count("github_revoked") == stats.reconnects >= 1,
            f"revocation recovered through the link: {outcome.owner.reconsents} re-consent(s), agent resumed after "
            f"{outcome.progress.reconnected_after or 0:.1f} s"
            + "".join(f" [{o}]" for o in outcome.owner.outcomes if o != "reconnected"),
        ),
        (
            stats.read_while_github_blocked > 0,
            f"reports read while GitHub was disconnected: {stats.read_while_github_blocked}, filed after the reconnect",
        ),
        (reuse == 0, f"refresh-token reuse detected at the providers: {reuse}"),
        (stats.exceptions == 0, f"tool calls that raised instead of answering: {stats.exceptions}"),
        (
            not outcome.leaked,
            f"plaintext tokens in the vault file ({outcome.vault_bytes} bytes): {'SOME' if outcome.leaked else 'none'}",
        ),
    ]
    table = Table(
        title=f"Summary — {outcome.elapsed:.0f} s, {lifetimes:.0f} token lifetimes of {plan.lifetime:g} s for each provider",
        show_header=False,
        expand=False,
    )
    table.add_column(justify="right")
    table.add_column()
    for label, value in (
        ("reports seen", stats.reports_seen),
        ("issues created", stats.issues_created),
        ("replies posted", stats.replies_posted),
        ("duplicates", found.duplicate_issues + found.duplicate_replies),
        ("refreshes by trigger", ", ".join(f"{t} {n}" for t, n in sorted(refreshes.items())) or "none"),
        ("retries (waited out)", f"{stats.retries} ({rate_limited} rate_limited, {upstream} upstream_error answers)"),
        (
            "reauthorizations",
            f"{outcome.owner.reconsents} (notices posted to #{OPS_CHANNEL_NAME}: {stats.reauth_notices_posted})",
        ),
        ("time blocked", blocked),
    ):
        table.add_row(label, str(value))
    console.print()
    console.print(table)
    console.print(
        "  refreshes: proactive = due (75 % of the lifetime) when the agent called, scheduled = by the "
        "background scheduler, reactive = the provider said expired mid-call, expiry = already expired "
        "when called",
        style="dim",
    )
    for ok, line in checks:
        console.print(f"  {'[green]✔[/]' if ok else '[red]✘[/]'} {line}")
    passed = all(ok for ok, _ in checks)
    console.print("\n[bold green]PASS[/]: nothing lost, nothing done twice." if passed else "\n[bold red]FAIL[/]")
    return 0 if passed else 1
