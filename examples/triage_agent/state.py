"""What the triage agent remembers across restarts: how far it has read the channel, and the reports it has read
but not finished (issue filed? reply posted?). One JSON file, replaced atomically, so a crash leaves either the
old state or the new one — never half of each — and a restart neither skips nor repeats a report."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1
# Finished reports remembered so a re-read (a cursor that could not be saved) cannot queue them again.
DONE_REMEMBERED = 5000
MAX_STATE_BYTES = 50 * 1024 * 1024
SLACK_TS = re.compile(r"^\d{9,11}(\.\d{1,6})?$")


class StateError(Exception):
    """The state file exists but cannot be trusted; the agent stops rather than guess (and repeat or skip)."""


def message_key(channel: str, ts: str) -> str:
    """A Slack message's identity (channel + ts), short and safe to use in idempotency keys."""
    return hashlib.sha256(f"{channel}:{ts}".encode()).hexdigest()[:40]


@dataclass
class Report:
    channel: str
    ts: str
    user: str | None
    text: str
    read_while_github_blocked: bool = False
    issue_number: int | None = None
    issue_url: str | None = None
    replied_ts: str | None = None
    failed: str | None = None  # why it can never be filed (refused input); kept so nothing vanishes silently

    @property
    def key(self) -> str:
        return message_key(self.channel, self.ts)

    @property
    def finished(self) -> bool:
        return self.failed is not None or (self.issue_url is not None and self.replied_ts is not None)


@dataclass
class AgentState:
    cursor: str | None = None  # ts of the newest channel message already looked at
    queue: list[Report] = field(default_factory=list)  # read, not finished, oldest first
    done: list[str] = field(default_factory=list)  # keys of finished reports, newest last
    failed: list[Report] = field(default_factory=list)

    def knows(self, channel: str, ts: str) -> bool:
        key = message_key(channel, ts)
        return key in self.done or any(r.key == key for r in self.queue)

    def finish(self, report: Report) -> None:
        self.queue = [r for r in self.queue if r.key != report.key]
        if report.failed is not None:
            self.failed.append(report)
        self.done.append(report.key)
        del self.done[:-DONE_REMEMBERED]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "cursor": self.cursor,
            "queue": [asdict(r) for r in self.queue],
            "done": self.done,
            "failed": [asdict(r) for r in self.failed],
        }

    @classmethod
    def from_json(cls, data: Any) -> AgentState:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise StateError("not a triage-agent state file of this version")
        cursor = data.get("cursor")
        if cursor is not None and not (isinstance(cursor, str) and SLACK_TS.match(cursor)):
            raise StateError("the cursor in the state file is not a Slack timestamp")
        try:
            state = cls(
                cursor=cursor,
                queue=[Report(**r) for r in data.get("queue") or []],
                done=[str(k) for k in data.get("done") or []],
                failed=[Report(**r) for r in data.get("failed") or []],
            )
        except TypeError as exc:
            raise StateError(f"malformed state file ({exc})") from None
        if not all(
            isinstance(r.channel, str) and isinstance(r.ts, str) and SLACK_TS.match(r.ts) and isinstance(r.text, str)
            for r in [*state.queue, *state.failed]
        ):
            raise StateError("a queued report in the state file is malformed")
        return state


class StateFile:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> AgentState:
        try:
            if self.path.stat().st_size > MAX_STATE_BYTES:
                raise StateError(f"{self.path} is larger than {MAX_STATE_BYTES} bytes")
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AgentState()
        except UnicodeDecodeError:
            raise StateError(f"{self.path} is not UTF-8 text") from None
        try:
            return AgentState.from_json(json.loads(raw))
        except ValueError as exc:
            raise StateError(f"{self.path} is not JSON ({exc.__class__.__name__})") from None

    def save(self, state: AgentState) -> None:
        """Write to a temporary file beside the target, fsync it, rename it over the target, fsync the directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state.to_json(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
