"""`grantkeeper sessions`: signed-in browser sessions and MCP client sessions, listed and revoked."""

from __future__ import annotations

import argparse
import json
from typing import Any

from server.cli.common import (
    EXIT_OK,
    JSON_HELP,
    ORG_HELP,
    USER_HELP,
    CliError,
    Commands,
    cli_actor,
)
from server.settings import Settings


def add_sessions(commands: Commands) -> None:
    """`sessions list|revoke`."""
    sessions = commands.add_parser("sessions", help="signed-in browser sessions and MCP client sessions").add_subparsers(
        metavar="ACTION"
    )
    session_list = sessions.add_parser("list", help="live sessions: kind, who, which client, since when, last used")
    session_list.add_argument("--all", action="store_true", help="include ended and revoked sessions")
    session_list.add_argument("--json", action="store_true", help=JSON_HELP)
    session_list.set_defaults(handler=cmd_sessions_list)
    session_revoke = sessions.add_parser("revoke", help="revoke one session by id, or all of an org (and user)")
    session_revoke.add_argument("session_id", nargs="?", help="an id from `grantkeeper sessions list`")
    session_revoke.add_argument("--org", help=ORG_HELP)
    session_revoke.add_argument("--user", help=USER_HELP)
    session_revoke.set_defaults(handler=cmd_sessions_revoke)


def _session_stores(settings: Settings) -> tuple[Any, Any]:
    from server.identity.sessions import SessionStore
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    return SessionStore(vault, settings), vault.engine


def _when(moment: Any) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def cmd_sessions_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.identity.authorization_server import list_grants

    browsers, engine = _session_stores(settings)
    rows = [
        {
            "kind": "browser",
            "id": row.id,
            "org": row.org,
            "user": row.user,
            "client": None,
            "admin": row.is_admin,
            "since": _when(row.created_at),
            "last_used": _when(row.last_seen_at),
            "ended": _when(row.revoked_at),
        }
        for row in browsers.listing(include_ended=args.all)
    ]
    rows += [
        {
            "kind": "mcp",
            "id": row.id,
            "org": row.org,
            "user": row.user,
            "client": row.client_name or row.client_id,
            "admin": None,
            "since": _when(row.created_at),
            "last_used": _when(row.last_used_at),
            "ended": _when(row.revoked_at),
        }
        for row in list_grants(engine, include_revoked=args.all)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no sessions")
    else:
        for row in rows:
            who = f"{row['org']}/{row['user']}" + (" (admin)" if row["admin"] else "")
            client = f"  client {row['client']}" if row["client"] else ""
            ended = f"  ended {row['ended']}" if row["ended"] else ""
            print(f"{row['id']}  {row['kind']:<7} {who:<30} since {row['since']}  last used {row['last_used']}{client}{ended}")
    return EXIT_OK


def cmd_sessions_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from server.monitoring.audit import AuditTrail

    if not args.session_id and not args.org:
        raise CliError("name a session id, or --org (and --user)")
    from server.identity.authorization_server import revoke_grants

    browsers, engine = _session_stores(settings)
    ended = browsers.revoke(session_id=args.session_id, org=args.org, user=args.user)
    ended += revoke_grants(engine, grant_id=args.session_id, org=args.org, user=args.user)
    if not ended:
        raise CliError("no live session matched")
    target = args.session_id or "/".join(part for part in (args.org, args.user) if part)
    AuditTrail(engine).record_sync(cli_actor(), "session_revoked", target=target, session=str(ended))
    print(f"revoked {ended} session(s)")
    return EXIT_OK
