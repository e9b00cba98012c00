"""The triage agent: reads #bug-reports, files each bug report as one GitHub issue, answers in the report's
thread with the link — through grantkeeper's tools only, so it never sees a token.

Every tool result is structured, and each status has one answer here: `ok` moves on; `reauth_required` tells
the owner (once per outage) and pauses only that connector; `rate_limited` and retryable `upstream_error` wait
for the result's own hint; a write whose outcome is unknown is repeated with the same idempotency key, which
grantkeeper turns into "look first, then write at most once".
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from examples.triage_agent.classify import Classifier, RuleClassifier
from examples.triage_agent.state import AgentState, Report, StateFile, message_key

SLACK, GITHUB = "slack", "github"
MAX_TITLE = 120
MAX_QUOTED = 20000  # of the Slack text quoted in the issue body (GitHub takes 65536 characters)
NOTICE_PREFIX = ":warning: triage-agent:"


class ToolSession(Protocol):
    """What the agent needs of an MCP client session (`mcp.ClientSession` is one)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, read_timeout_seconds: float | None = None
    ) -> Any: ...


@dataclass
class AgentConfig:
    channel: str  # the Slack channel id to watch, e.g. C0BUGS
    repo: str  # owner/name the issues go to
    state_path: Path
    owner_channel: str | None = None  # where "please reconnect" notices go while Slack works
    poll_seconds: float = 5.0
    read_limit: int = 100
    reauth_check_seconds: float = 10.0  # how often a disconnected connector is tried again
    backoff_first_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    longest_wait_seconds: float = 3600.0  # a provider's hint beyond this is not believed
    call_timeout_seconds: float = 120.0
    labels: tuple[str, ...] = ("bug", "from-slack")


@dataclass
class Block:
    """A connector the agent is not calling right now, and until when."""

    status: str
    reason: str
    since: float
    until: float
    failures: int = 1
    link: str | None = None
    notified: bool = False
    needed_owner: bool = False  # this pause began with (or went through) reauth_required


@dataclass
class AgentStats:
    messages_read: int = 0
    reports_seen: int = 0
    issues_created: int = 0
    issues_found_existing: int = 0
    replies_posted: int = 0
    replies_found_existing: int = 0
    retries: int = 0
    reauth_notices: int = 0
    reauth_notices_posted: int = 0
    reconnects: int = 0
    read_while_github_blocked: int = 0
    exceptions: int = 0  # tool calls that raised instead of returning a structured result
    calls: Counter[str] = field(default_factory=Counter)  # "tool status" -> count
    blocked_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs (and it cannot
        # rebuild a defaultdict).
        return {**vars(self), "calls": dict(self.calls), "blocked_seconds": dict(self.blocked_seconds)}


Observer = Callable[[str, dict[str, Any]], None]


class TriageAgent:
    def __init__(
        self,
        session: ToolSession,
        config: AgentConfig,
        *,
        classifier: Classifier | None = None,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.session = session
        self.config = config
        self.classifier = classifier or RuleClassifier()
        self.observe = observe or (lambda kind, detail: None)
        self.clock = clock
        self.store = StateFile(config.state_path)
        self.state: AgentState = self.store.load()
        self.stats = AgentStats()
        self.blocks: dict[str, Block] = {}
        self._pending_notice: tuple[str, dict[str, Any]] | None = None  # a reauth_required the owner must hear of

    # ---- the loop -----------------------------------------------------------------------------------
    async def run(self, stop: anyio.Event) -> None:
        """Poll, file and reply until `stop` is set; sleeps between rounds, never longer than the poll interval."""
        while not stop.is_set():
            await self.step()
            with anyio.move_on_after(self.idle_seconds()):
                await stop.wait()

    async def step(self) -> None:
        await self.poll()
        await self.notify_owner()
        await self.drain()
        await self.notify_owner()

    def idle_seconds(self) -> float:
        wake = [b.until - self.clock() for b in self.blocks.values()]
        return max(0.05, min([self.config.poll_seconds, *wake]))

    @property
    def pending(self) -> int:
        return len(self.state.queue)

    # ---- reading ------------------------------------------------------------------------------------
    async def poll(self) -> None:
        """Read every message newer than the cursor (all pages), queue the bug reports, then save cursor and
        queue together: a crash before the save re-reads the same messages, a crash after it loses nothing."""
        if not self._may_call(SLACK):
            return
        messages: list[dict[str, Any]] = []
        page_cursor: str | None = None
        while True:
            arguments: dict[str, Any] = {"channel": self.config.channel, "limit": self.config.read_limit}
            if self.state.cursor:
                arguments["oldest"] = self.state.cursor
            if page_cursor:
                arguments["cursor"] = page_cursor
            result = await self._call(SLACK, "slack_read_channel", arguments)
            if result["status"] != "ok":
                return  # nothing saved: the next round reads the same messages again
            messages += result["messages"]
            page_cursor = result.get("next_cursor")
            if not result.get("has_more") or not page_cursor:
                break
        fresh = sorted((m for m in messages if self._newer(m["ts"])), key=lambda m: float(m["ts"]))
        if not fresh:
            return
        self.stats.messages_read += len(fresh)
        github_blocked = GITHUB in self.blocks and self.blocks[GITHUB].status == "reauth_required"
        for message in fresh:
            text = message.get("text") or ""
            is_reply = message.get("thread_ts") not in (None, message["ts"])
            if is_reply or text.startswith(NOTICE_PREFIX) or self.state.knows(self.config.channel, message["ts"]):
                continue
            if await self.classifier.is_bug_report(text):
                report = Report(
                    self.config.channel, message["ts"], message.get("user"), text, read_while_github_blocked=github_blocked
                )
                self.state.queue.append(report)
                self.stats.reports_seen += 1
                self.stats.read_while_github_blocked += github_blocked
                self.observe("report_queued", {"ts": report.ts, "text": text, "while_github_blocked": github_blocked})
        self.state.cursor = fresh[-1]["ts"]
        self.store.save(self.state)

    def _newer(self, ts: str) -> bool:
        return self.state.cursor is None or float(ts) > float(self.state.cursor)

    # ---- filing and replying -------------------------------------------------------------------------
    async def drain(self) -> None:
        """Finish queued reports, oldest first. A blocked connector pauses only its own half of the work."""
        for report in list(self.state.queue):
            if report.issue_url is None and self._may_call(GITHUB):
                await self._file(report)
            if report.issue_url is not None and report.replied_ts is None and self._may_call(SLACK):
                await self._reply(report)
            if report.finished:
                self.state.finish(report)
                self.store.save(self.state)
                self.observe("report_done", {"ts": report.ts, "issue": report.issue_number, "failed": report.failed})

    async def _file(self, report: Report) -> None:
        title = issue_title(report.text)
        body = (
            f"Reported in Slack by <@{report.user or 'unknown'}> (channel {report.channel}, message {report.ts}):"
            f"\n\n> " + report.text[:MAX_QUOTED].replace("\n", "\n> ") + "\n\nFiled by the triage agent."
        )
        result = await self._call(
            GITHUB,
            "github_create_issue",
            {
                "repo": self.config.repo,
                "title": title,
                "body": body,
                "labels": list(self.config.labels),
                "idempotency_key": "issue-" + report.key,
            },
        )
        if result["status"] == "ok":
            issue = result["issue"]
            report.issue_number, report.issue_url = issue["number"], issue["html_url"]
            if result["created"]:
                self.stats.issues_created += 1
            else:
                self.stats.issues_found_existing += 1
            self.store.save(self.state)
            self.observe("issue_filed", {"ts": report.ts, "number": issue["number"], "created": result["created"]})
        elif _refused(result):
            report.failed = f"github: {result.get('reason')}"

    async def _reply(self, report: Report) -> None:
        text = f"Thanks! Filed as GitHub issue #{report.issue_number}: {report.issue_url}"
        result = await self._call(
            SLACK,
            "slack_post_message",
            {"channel": report.channel, "text": text, "thread_ts": report.ts, "idempotency_key": "reply-" + report.key},
        )
        if result["status"] == "ok":
            report.replied_ts = result["ts"]
            if result.get("posted", True):
                self.stats.replies_posted += 1
            else:
                self.stats.replies_found_existing += 1
            self.store.save(self.state)
            self.observe("reply_posted", {"ts": report.ts, "posted": result.get("posted", True)})
        elif _refused(result):
            report.failed = f"slack: {result.get('reason')}"

    # ---- calling, and what each status means ---------------------------------------------------------
    def _may_call(self, connector: str) -> bool:
        block = self.blocks.get(connector)
        return block is None or self.clock() >= block.until

    async def _call(self, connector: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            with anyio.fail_after(self.config.call_timeout_seconds):
                result = await self.session.call_tool(tool, arguments)
            content = result.structured_content
            if not isinstance(content, dict) or "status" not in content:
                raise ValueError("the tool result has no structured status")
        except Exception as exc:  # the transport, a timeout, a malformed answer: back off, never crash
            self.stats.exceptions += 1
            self.observe("call_raised", {"tool": tool, "error": type(exc).__name__})
            content = {
                "status": "upstream_error",
                "connector": connector,
                "reason": type(exc).__name__,
                "retryable": True,
                "outcome_unknown": True,
                "next_step": "try again later",
            }
        status = content["status"]
        self.stats.calls[f"{tool} {status}"] += 1
        if status == "ok":
            self._unblock(connector)
        else:
            self._handle_failure(connector, tool, content)
        return content

    def _handle_failure(self, connector: str, tool: str, result: dict[str, Any]) -> None:
        status, now = result["status"], self.clock()
        previous = self.blocks.get(connector)
        failures = (previous.failures + 1) if previous else 1
        match status:
            case "reauth_required":
                wait = self.config.reauth_check_seconds
            case "rate_limited":
                hint = result.get("retry_after_seconds")
                wait = (
                    min(float(hint), self.config.longest_wait_seconds)
                    if isinstance(hint, (int, float)) and hint > 0
                    else self._backoff(failures)
                )
                self.stats.retries += 1
            case "upstream_error" if result.get("retryable") or result.get("outcome_unknown"):
                wait = self._backoff(failures)
                self.stats.retries += 1
            case "admin_action_required":
                wait = self.config.reauth_check_seconds
            case _:  # invalid input, a non-retryable refusal: this report's problem, not the connector's
                return
        block = Block(
            status,
            str(result.get("reason") or status),
            previous.since if previous else now,
            now + wait,
            failures,
            result.get("magic_link") or (previous.link if previous else None),
            previous.notified if previous else False,
            status == "reauth_required" or (previous is not None and previous.needed_owner),
        )
        self.blocks[connector] = block
        self.observe("blocked", {"connector": connector, "status": status, "reason": block.reason, "wait": wait})
        if block.link and block.link != (previous.link if previous else None):
            self.observe("reauth_link", {"connector": connector, "link": block.link})
        if status == "reauth_required" and not block.notified:
            block.notified = True
            self.stats.reauth_notices += 1
            self.observe(
                "reauth_required",
                {"connector": connector, "link": block.link, "account": result.get("account"), "reason": block.reason},
            )
            self._pending_notice = (connector, result)

    def _backoff(self, failures: int) -> float:
        return min(self.config.backoff_max_seconds, self.config.backoff_first_seconds * 2 ** (failures - 1))

    def _unblock(self, connector: str) -> None:
        block = self.blocks.pop(connector, None)
        if block is None:
            return
        self.stats.blocked_seconds[connector] += self.clock() - block.since
        if block.needed_owner:
            self.stats.reconnects += 1
            self.observe("reconnected", {"connector": connector, "blocked_seconds": self.clock() - block.since})
        else:
            self.observe("unblocked", {"connector": connector})

    async def notify_owner(self) -> None:
        """Tell the owner a connector needs them: always on stdout (the observer), and in the owner's Slack channel
        when Slack is the connector that still works."""
        if self._pending_notice is None:
            return
        connector, result = self._pending_notice
        self._pending_notice = None
        if not self.config.owner_channel or connector == SLACK or not self._may_call(SLACK):
            return
        text = (
            f"{NOTICE_PREFIX} {connector} account {result.get('account')} needs its owner to reconnect it "
            f"({result.get('reason')}). Reports keep being read and queued meanwhile. Open: {result.get('magic_link')}"
        )
        key = "notice-" + message_key(connector, str(result.get("link_expires_at")))
        posted = await self._call(
            SLACK, "slack_post_message", {"channel": self.config.owner_channel, "text": text, "idempotency_key": key}
        )
        if posted["status"] == "ok":
            self.stats.reauth_notices_posted += 1


def _refused(result: dict[str, Any]) -> bool:
    """A result that will not change by calling again with the same arguments."""
    status = result["status"]
    return status == "invalid_input" or (
        status == "upstream_error" and not result.get("retryable") and not result.get("outcome_unknown")
    )


def issue_title(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "Bug report from Slack")
    for prefix in ("bug:", "bug -", "[bug]"):
        if first.lower().startswith(prefix):
            first = first[len(prefix) :].strip() or first
    first = first[:1].upper() + first[1:]
    return first if len(first) <= MAX_TITLE else first[: MAX_TITLE - 1] + "…"
