"""The triage agent's world, shared by `grantkeeper demo` and the soak test: people posting to #bug-reports, a
timeline of provider faults measured in token lifetimes, an account owner who answers the reconnect link, and
the audit that says whether any report was lost or handled twice."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from simulators import GitHubSimulator, SlackSimulator
from simulators.person import link_user

BUG_CHANNEL, BUG_CHANNEL_NAME = "C0BUGREPORTS", "bug-reports"
OPS_CHANNEL, OPS_CHANNEL_NAME = "C0TRIAGEOPS", "triage-ops"
REPO = "acme/webshop"
CREATE_ISSUE_ENDPOINT = "POST /repos/{owner}/{repo}/issues"
RECONNECT_DEADLINE_SECONDS = 30

BUGS = [
    "Bug: checkout fails on Safari when the cart holds {n} items",
    "The export to CSV crashes for report #{n}",
    "Error 500 on /api/orders?page={n} since this morning",
    "Login button does nothing on Android build {n} — broken since yesterday",
    "Search returns the wrong results for 'invoice {n}'",
    "App hangs on the settings page after {n} seconds",
    "Uploading a PNG bigger than {n} MB fails with a timeout",
    "Regression: discount code SAVE{n} is not working any more",
]
CHATTER = [
    "Standup moves to {n}:15 today",
    "Who has the meeting room at {n}?",
    "Release notes for 2.{n} are in the wiki",
    "Lunch at noon? ({n} of us so far)",
]
REPORTERS = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"]


@dataclass(frozen=True)
class Seeded:
    channel: str
    ts: str
    text: str
    is_bug: bool


class Reporters:
    """Colleagues posting to a channel: mostly bug reports, some chatter the agent must leave alone."""

    def __init__(self, slack: SlackSimulator, channel: str = BUG_CHANNEL, *, chatter_every: int = 3):
        self.slack = slack
        self.channel = channel
        self.chatter_every = chatter_every
        self.seeded: list[Seeded] = []
        self._count = itertools.count(1)

    def post_one(self) -> Seeded:
        n = next(self._count)
        is_bug = n % self.chatter_every != 0
        templates = BUGS if is_bug else CHATTER
        text = templates[n % len(templates)].format(n=n)
        message = self.slack.seed_message(self.channel, text, user=REPORTERS[n % len(REPORTERS)])
        seeded = Seeded(self.channel, message["ts"], text, is_bug)
        self.seeded.append(seeded)
        return seeded

    @property
    def bug_reports(self) -> list[Seeded]:
        return [s for s in self.seeded if s.is_bug]


def prepare(slack: SlackSimulator, github: GitHubSimulator, lifetime: float, channels: list[tuple[str, str]]) -> None:
    """Token lifetimes of `lifetime` seconds for every grant minted from now on, and the channels and repo."""
    for simulator in (slack, github):
        simulator.set_access_ttl(lifetime)  # type: ignore[arg-type]  # the simulators take fractions too
    for channel_id, name in channels:
        slack.add_channel(channel_id, name)
    github.add_repo(REPO)


@dataclass
class Fault:
    at: float  # in token lifetimes from the start
    name: str
    description: str
    apply: Callable[[], object]


def _together(*actions: Callable[[], object]) -> Callable[[], None]:
    """One fault made of several actions (one per provider), applied in order."""

    def apply() -> None:
        for action in actions:
            action()

    return apply


def fault_timeline(
    slack: SlackSimulator, github: GitHubSimulator, lifetime: float, *, revoke: bool = True, cycles: int = 1, period: float = 30
) -> list[Fault]:
    """The faults a long-running agent meets, in order; `cycles` times, one every `period` token lifetimes."""
    once = _one_cycle(slack, github, lifetime, revoke=revoke)
    return [Fault(f.at + n * period, f.name, f.description, f.apply) for n in range(cycles) for f in once]


def _one_cycle(slack: SlackSimulator, github: GitHubSimulator, lifetime: float, *, revoke: bool) -> list[Fault]:
    timeline = [
        Fault(
            2,
            "tokens_killed",
            "Both providers kill every access token in the middle of the agent's calls",
            _together(slack.expire_access_tokens, github.expire_access_tokens),
        ),
        Fault(
            3,
            "rate_limit_burst",
            "A 429 burst: Slack and GitHub each refuse the next 5 calls (Retry-After: 1)",
            _together(lambda: slack.rate_limit(count=5, retry_after=1), lambda: github.rate_limit(count=5, retry_after=1)),
        ),
        Fault(
            4,
            "token_endpoint_flaky",
            "Both token endpoints fail 30 % of refreshes for 3 token lifetimes",
            _together(
                lambda: slack.token_endpoint_flaky(0.3, 3 * lifetime, seed=13),
                lambda: github.token_endpoint_flaky(0.3, 3 * lifetime, seed=31),
            ),
        ),
        Fault(
            5,
            "answers_lost",
            "GitHub creates the next issue but the answer is lost (502); Slack does the same with the next post",
            _together(
                lambda: github.fail(1, 502, after_processing=True, endpoint=CREATE_ISSUE_ENDPOINT),
                lambda: slack.fail(1, 502, after_processing=True, endpoint="chat.postMessage"),
            ),
        ),
        Fault(
            6,
            "tokens_ended_early",
            "Both providers end the next token they issue at once, though they announce a day of life",
            _together(lambda: slack.end_next_access_tokens_early(1), lambda: github.end_next_access_tokens_early(1)),
        ),
        Fault(
            8,
            "slack_outage",
            "Slack is down (API and token endpoint, 503) for 4 token lifetimes",
            lambda: slack.outage(4 * lifetime),
        ),
    ]
    if revoke:
        timeline.append(Fault(13, "github_revoked", "The GitHub grant is revoked at GitHub", lambda: github.revoke()))
    return timeline


async def play(timeline: list[Fault], lifetime: float, on_fault: Callable[[Fault], None], clock: Callable[[], float]) -> None:
    """Apply each fault at its time, measured from the moment this starts."""
    started = clock()
    for fault in sorted(timeline, key=lambda f: f.at):
        await anyio.sleep(max(0.0, started + fault.at * lifetime - clock()))
        fault.apply()
        on_fault(fault)


class Owner:
    """The account owner: notices the agent's reconnect link, takes a while, then approves at the provider."""

    def __init__(self, delay_seconds: float):
        self.delay_seconds = delay_seconds
        self.links: list[str] = []
        self.reconsents = 0
        self.outcomes: list[str] = []
        self._noticed = anyio.Event()

    def observe(self, kind: str, detail: dict[str, Any]) -> None:
        if kind in ("reauth_required", "reauth_link") and detail.get("link"):
            self.links.append(detail["link"])
            self._noticed.set()

    async def run(self) -> None:
        while True:
            await self._noticed.wait()
            self._noticed = anyio.Event()
            await anyio.sleep(self.delay_seconds)
            try:
                with anyio.fail_after(RECONNECT_DEADLINE_SECONDS):
                    async with link_user() as person:
                        page = await person.reconnect(self.links[-1])
                # The page's own verdict: a refusal's wording can mention a reconnect too ("reconnected meanwhile").
                outcome = (
                    "reconnected"
                    if page.status_code == 200 and 'data-outcome="reconnected"' in page.text
                    else f"HTTP {page.status_code}"
                )
            except (TimeoutError, AssertionError, OSError) as exc:
                outcome = f"failed: {type(exc).__name__} {str(exc)[:200]}"
            self.outcomes.append(outcome)
            if outcome != "reconnected":
                self._noticed.set()  # try again, with the newest link the agent was given
            self.reconsents += outcome == "reconnected"


@dataclass
class Audit:
    bug_reports: int
    chatter: int
    issues: int
    replies: int
    lost: list[str] = field(default_factory=list)  # bug reports without an issue or without a reply
    duplicate_issues: int = 0
    duplicate_replies: int = 0
    chatter_filed: int = 0

    @property
    def clean(self) -> bool:
        return not self.lost and not self.duplicate_issues and not self.duplicate_replies and not self.chatter_filed


def audit(slack: SlackSimulator, github: GitHubSimulator, seeded: list[Seeded], repo: str = REPO) -> Audit:
    """Count, at the simulators, what became of every message people posted."""
    issues = github.issues(repo)
    by_channel = {channel: slack.messages(channel) for channel in {s.channel for s in seeded}}
    result = Audit(bug_reports=sum(s.is_bug for s in seeded), chatter=sum(not s.is_bug for s in seeded), issues=0, replies=0)
    for report in seeded:
        marker = f"(channel {report.channel}, message {report.ts})"
        filed = sum(marker in (issue.get("body") or "") for issue in issues)
        replies = sum(
            1
            for m in by_channel[report.channel]
            if m.get("thread_ts") == report.ts and m["ts"] != report.ts and m.get("user") == slack.bot_user_id
        )
        if not report.is_bug:
            result.chatter_filed += filed
            continue
        result.issues += filed
        result.replies += replies
        if filed == 0 or replies == 0:
            result.lost.append(report.ts)
        result.duplicate_issues += max(0, filed - 1)
        result.duplicate_replies += max(0, replies - 1)
    return result


def refreshes_by_trigger(vault: Any) -> Counter[str]:
    """Successful refreshes by what started them (proactive, reactive, expiry, scheduled), from the vault's
    lifecycle events."""
    return Counter(str(event.detail.get("trigger")) for event in vault.events.recent(kind="refresh_succeeded", limit=1_000_000))
