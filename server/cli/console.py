"""The operator's console on the command line: `status`, `events` and `audit`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from server.cli.common import (
    EXIT_OK,
    EXIT_UNHEALTHY,
    JSON_HELP,
    ORG_HELP,
    USER_HELP,
    CliError,
    Commands,
    find_account_ref,
)
from server.settings import Settings


def add_status(commands: Commands) -> None:
    """`status`."""
    status = commands.add_parser("status", help="every account and its health; exits 1 when any needs action")
    status.add_argument("--org", help=ORG_HELP)
    status.add_argument("--user", help=USER_HELP)
    status.add_argument("--json", action="store_true", help=JSON_HELP)
    status.set_defaults(handler=cmd_status)


def add_events(commands: Commands) -> None:
    """`events`."""
    events = commands.add_parser("events", help="lifecycle events, newest last")
    events.add_argument("--account", help="its id, or org/user/connector[/label]")
    events.add_argument("--since", help="30m, 2h, 7d, or an ISO-8601 time")
    events.add_argument("--severity", choices=["info", "warning", "error", "critical"], help="at least this severe")
    events.add_argument("--limit", type=int, default=100, help="show at most this many, newest last (default 100)")
    events.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    events.add_argument("--interval", type=float, default=1.0, help="seconds between reads when following")
    events.set_defaults(handler=cmd_events)


def add_audit(commands: Commands) -> None:
    """`audit`."""
    audit = commands.add_parser("audit", help="the audit trail: administrative actions and tool calls")
    audit.add_argument("--since", help="30m, 2h, 7d, or an ISO-8601 time")
    audit.add_argument("--actor", help="only this actor (e.g. acme/alice, cli:root, key:<id>)")
    audit.add_argument("--limit", type=int, default=100, help="show at most this many rows (default 100)")
    audit.add_argument("--json", action="store_true", help=JSON_HELP)
    audit.set_defaults(handler=cmd_audit)


def _relative(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    text = f"{span / 86400:.0f}d" if span >= 86400 else f"{span / 3600:.0f}h" if span >= 3600 else f"{span / 60:.0f}m"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _since(given: str | None) -> datetime | None:
    """`--since` (`30m`, `2h`, `7d`, or an ISO-8601 time) as a moment; a bad one is a usage error (exit 2)."""
    from server.console.history import BadTimeFilter, parse_since

    try:
        return parse_since(given, datetime.now(UTC)) if given else None
    except BadTimeFilter as exc:
        raise CliError(str(exc)) from None


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from server.connectors import load_connectors
    from server.console.overview import account_rows
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    rows = account_rows(vault, load_connectors(settings), org=args.org, user=args.user)
    needing = [row for row in rows if row.needs_action]
    if args.json:
        print(json.dumps({"needs_action": len(needing), "accounts": [row.as_json() for row in rows]}, indent=2))
    elif not rows:
        print("no accounts")
    else:
        now = datetime.now(UTC)
        header = f"{'ACCOUNT':<36} {'STATUS':<22} {'ACCESS EXPIRES':<15} {'LAST REFRESH':<15} {'FAILS':<5} NEXT ACTION"
        print(header)
        for row in rows:
            outcome = f" {row.last_refresh_outcome}" if row.last_refresh_outcome else ""
            refresh = f"{_relative(row.last_refresh_at, now)}{outcome}"
            mark = "!" if row.needs_action else " "
            print(
                f"{row.name:<36} {row.status:<22} {_relative(row.access_expires_at, now):<15} {refresh:<15} "
                f"{row.consecutive_failures:<5} {mark} {row.next_action}"
            )
        print(f"{len(needing)} of {len(rows)} account(s) need action" if needing else f"all {len(rows)} account(s) fine")
    return EXIT_UNHEALTHY if needing else EXIT_OK


def cmd_events(settings: Settings, args: argparse.Namespace) -> int:
    from server.console.history import event_line, last_event_id, lifecycle_events
    from server.runtime import open_vault

    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be between 1 and 1000")
    if not 0.05 <= args.interval <= 3600:
        raise CliError("--interval must be between 0.05 and 3600 seconds")
    vault, _ = open_vault(settings)
    since = _since(args.since)
    account_ids = [find_account_ref(vault, args.account).id] if args.account else None
    last = last_event_id(vault)  # where following starts: nothing that happens from here on is missed
    recent = lifecycle_events(vault, account_ids=account_ids, min_severity=args.severity, since=since, limit=args.limit)
    for event in reversed(recent):
        print(event_line(event))
    if not args.follow:
        return EXIT_OK
    print("following new events (Ctrl-C to stop)", file=sys.stderr, flush=True)
    sys.stdout.flush()
    while True:
        for event in lifecycle_events(vault, account_ids=account_ids, min_severity=args.severity, after_id=last, limit=1000):
            print(event_line(event), flush=True)
            last = event.id if event.id is not None else last
        time.sleep(args.interval)  # polling the database: events come from every worker of the fleet


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from server.monitoring.audit import AuditTrail
    from server.runtime import open_vault

    if not 1 <= args.limit <= 10000:
        raise CliError("--limit must be between 1 and 10000")
    vault, _ = open_vault(settings)
    since = _since(args.since)
    rows = list(reversed(AuditTrail(vault.engine).rows(since=since, actor=args.actor, limit=args.limit)))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "at": r.at.isoformat(),
                        "actor": r.actor,
                        "action": r.action,
                        "target": r.target,
                        "status": r.status,
                        "duration_ms": r.duration_ms,
                        "detail": r.detail,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print("no audit rows")
    for r in rows:
        extra = " ".join(f"{k}={v}" for k, v in sorted((r.detail or {}).items()))
        took = f" {r.duration_ms}ms" if r.duration_ms is not None else ""
        print(
            f"{r.at:%Y-%m-%dT%H:%M:%SZ}  {r.actor:<24} {r.action:<16} {r.target or '-':<36} {r.status or ''}{took} "
            f"{extra}".rstrip()
        )
    return EXIT_OK
