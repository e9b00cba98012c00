"""`grantkeeper keys`: API keys for HTTP callers, created, listed and revoked."""

from __future__ import annotations

import argparse
import json
import sys

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


def add_keys(commands: Commands) -> None:
    """`keys create|list|revoke`."""
    keys = commands.add_parser("keys", help="API keys for HTTP callers").add_subparsers(metavar="ACTION")
    create = keys.add_parser("create", help="create a key for org/user; it is printed once and stored as a hash")
    create.add_argument("--org", help=ORG_HELP)
    create.add_argument("--user", help=USER_HELP)
    create.add_argument("--description", help="a note shown by `keys list`, such as which agent holds the key")
    create.add_argument(
        "--admin", action="store_true", help="the key may also use the operator's console (/dashboard), for headless use"
    )
    create.set_defaults(handler=cmd_keys_create)
    key_list = keys.add_parser("list", help="list keys (never the keys themselves)")
    key_list.add_argument("--org", help=ORG_HELP)
    key_list.add_argument("--user", help=USER_HELP)
    key_list.add_argument("--json", action="store_true", help=JSON_HELP)
    key_list.set_defaults(handler=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id or its printed prefix")
    revoke.add_argument("key", metavar="ID_OR_PREFIX", help="the key's id or the prefix `keys list` shows")
    revoke.set_defaults(handler=cmd_keys_revoke)


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth import create_api_key
    from server.monitoring.audit import AuditTrail
    from server.runtime import open_vault

    org, user = args.org or settings.org, args.user or settings.user
    if not org or not user or "/" in org + user:
        raise CliError("--org and --user must be non-empty, without '/'")
    vault, _ = open_vault(settings)
    issued = create_api_key(vault, org=org, user=user, description=args.description, admin=args.admin)
    AuditTrail(vault.engine).record_sync(
        cli_actor(),
        "key_created",
        target=f"{org}/{user}",
        key_id=issued.record.id,
        key_prefix=issued.record.prefix,
        admin=args.admin,
    )
    print(issued.key)
    role = " It may also use the operator's console (/dashboard)." if args.admin else ""
    print(
        f"API key {issued.record.prefix}… (id {issued.record.id}) acts as {user} (org {org}).{role} It is shown only "
        "now; store it in your agent's secret store. Send it as 'Authorization: Bearer <key>'.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    rows = [
        {
            "id": k.id,
            "prefix": k.prefix,
            "org": k.org,
            "user": k.user,
            "admin": k.admin,
            "description": k.description,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in vault.api_keys.all(args.org, args.user)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no API keys")
    else:
        for row in rows:
            state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
            state += ", admin" if row["admin"] else ""
            print(
                f"{row['id']}  {row['prefix']}…  {row['org']}/{row['user']:<20} {state}"
                + (f"  {row['description']}" if row["description"] else "")
            )
    return EXIT_OK


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from server.monitoring.audit import AuditTrail
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    matched = vault.api_keys.revoke(args.key)
    if not matched:
        raise CliError(f"no active API key with id or prefix {args.key!r}")
    if len(matched) > 1:
        raise CliError(f"{len(matched)} active keys start with {args.key!r}; revoke by id: " + ", ".join(k.id for k in matched))
    AuditTrail(vault.engine).record_sync(
        cli_actor(),
        "key_revoked",
        target=f"{matched[0].org}/{matched[0].user}",
        key_id=matched[0].id,
        key_prefix=matched[0].prefix,
    )
    print(f"revoked {matched[0].prefix}… (id {matched[0].id}) of {matched[0].org}/{matched[0].user}")
    return EXIT_OK
