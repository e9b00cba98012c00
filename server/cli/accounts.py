"""`grantkeeper accounts`: import tokens you already hold, list accounts, disable, enable or remove one."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from server.cli.common import (
    EXIT_OK,
    JSON_HELP,
    ORG_HELP,
    USER_HELP,
    CliError,
    Commands,
    cli_actor,
    find_account_ref,
)
from server.settings import Settings

if TYPE_CHECKING:
    from server.lifecycle.account_import import HeldTokens, ProviderIdentity


def add_accounts(commands: Commands) -> None:
    """`accounts add|list|disable|enable|remove`."""
    accounts = commands.add_parser("accounts", help="connected accounts").add_subparsers(metavar="ACTION")
    add = accounts.add_parser("add", help="import tokens you already hold (JSON on stdin)")
    add.add_argument("connector", help="connector name (slack, github, ...)")
    add.add_argument("--org", help=ORG_HELP)
    add.add_argument("--user", help=USER_HELP)
    add.add_argument("--label", default="default", help="tells two accounts of one user and connector apart")
    add.add_argument("--replace", action="store_true", help="replace the credentials of an existing account")
    add.set_defaults(handler=cmd_accounts_add)
    listing = accounts.add_parser("list", help="list accounts and their health")
    listing.add_argument("--org", help=ORG_HELP)
    listing.add_argument("--user", help=USER_HELP)
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    listing.set_defaults(handler=cmd_accounts_list)
    for action, help_text in (
        ("disable", "stop agents using an account until it is enabled again"),
        ("enable", "let agents use a disabled account again"),
        ("remove", "offboard an account: end its grant at the provider and wipe its credentials"),
    ):
        sub = accounts.add_parser(action, help=help_text)
        sub.add_argument("account", metavar="ACCOUNT", help="its id, or org/user/connector[/label]")
        sub.set_defaults(handler=cmd_account_action, action=action)


def _read_import(stream: TextIO) -> HeldTokens:
    from server.lifecycle.account_import import HeldTokens

    raw = stream.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise CliError('stdin is not JSON; expected {"access_token": …, "refresh_token": …, "expires_in": …}') from None
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str) or not data["access_token"]:
        raise CliError("the JSON on stdin needs a non-empty string access_token")
    for name in ("refresh_token", "scope", "token_type", "provider_account_id"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise CliError(f"{name} must be a string")
    for name in ("expires_in", "refresh_token_expires_in"):
        if data.get(name) is not None and (not isinstance(data[name], (int, float)) or data[name] <= 0):
            raise CliError(f"{name} must be a positive number of seconds")
    expires_at = None
    if data.get("expires_at") is not None:
        try:
            moment = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise CliError("expires_at must be an ISO-8601 timestamp") from None
        expires_at = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return HeldTokens(
        access_token=data["access_token"],
        refresh_token=data.get("refresh_token"),
        token_type=data.get("token_type"),
        expires_in=data.get("expires_in"),
        expires_at=expires_at,
        refresh_token_expires_in=data.get("refresh_token_expires_in"),
        scope=data.get("scope"),
        provider_account_id=data.get("provider_account_id"),
    )


def cmd_accounts_add(settings: Settings, args: argparse.Namespace) -> int:
    from server.connectors import load_connectors
    from server.lifecycle import refreshless
    from server.lifecycle.account_import import AccountAlreadyConnected, AccountKey, import_account, learn_provider_identity
    from server.runtime import Runtime
    from server.vault.threads import in_vault_thread

    connectors = load_connectors(settings)
    if args.connector not in connectors:
        raise CliError(f"unknown connector {args.connector!r}; known: {', '.join(sorted(connectors))}")
    held = _read_import(sys.stdin)
    key = AccountKey(args.org or settings.org, args.user or settings.user, args.connector, args.label)
    runtime = Runtime.open(settings, connectors=connectors)

    async def add() -> None:
        try:
            try:
                imported = await in_vault_thread(import_account, runtime, key, held, replace=args.replace)
            except AccountAlreadyConnected as exists:
                raise CliError(f"account {exists} exists; pass --replace to replace its tokens") from None
            account = imported.account
            print(f"stored {account.display_name} (account id {account.id})")
            if imported.refreshless:
                print(
                    f"warning: no refresh token, so {account.display_name} "
                    f"{refreshless.describe(imported.credential.access_expires_at).removeprefix('no refresh token: ')}",
                    file=sys.stderr,
                )
            if not imported.provider_account_id:
                _report_provider_identity(await learn_provider_identity(runtime, imported))
        finally:
            await runtime.aclose()

    anyio.run(add)
    return EXIT_OK


def _report_provider_identity(identity: ProviderIdentity) -> None:
    unknown = (
        "provider account unknown: a reconnect link for it will record whoever completes it; pass "
        "provider_account_id in the JSON to pin it"
    )
    if identity.provider_account_id:
        print(f"provider account {identity.provider_account_id}")
    elif identity.unknown_because == "expired":
        print(f"{unknown} (the imported token is expired, so it was not asked)", file=sys.stderr)
    elif identity.unknown_because == "not_named":
        print(f"{unknown} (the provider's check does not name one)", file=sys.stderr)
    else:
        print(f"{unknown}; the provider answered {identity.unknown_because} ({identity.reason or ''})", file=sys.stderr)


def cmd_accounts_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.lifecycle import refreshless
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    accounts = vault.accounts.all(args.org, args.user)
    rows: list[dict[str, Any]] = []
    notes: list[str | None] = []
    for account in accounts:
        timings = vault.credentials.timings(account.id) or {}
        needs_user_at = refreshless.needs_user_at(account, timings)
        rows.append(
            {
                "account": account.display_name,
                "id": account.id,
                "status": account.status,
                "reason": account.status_reason,
                "provider_account_id": account.provider_account_id,
                **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in timings.items()},
                "needs_user_at": needs_user_at.isoformat() if needs_user_at else None,
            }
        )
        notes.append(refreshless.describe(needs_user_at) if needs_user_at else None)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no accounts")
    else:
        for account, row, note in zip(accounts, rows, notes, strict=True):
            if note:
                print(
                    f"{row['account']:<40} {row['status']}, {note} (send a reconnect link: grantkeeper link "
                    f"{account.connector} --org {account.org} --user {account.user})"
                )
                continue
            reason = f" ({row['reason']})" if row["reason"] else ""
            expiry = f"  expires {row['access_expires_at']}" if row.get("access_expires_at") else ""
            print(f"{row['account']:<40} {row['status']}{reason}{expiry}")
    return EXIT_OK


def cmd_account_action(settings: Settings, args: argparse.Namespace) -> int:
    from server.console.actions import AccountActions
    from server.runtime import Runtime

    runtime = Runtime.open(settings)

    async def act() -> str:
        try:
            account = await anyio.to_thread.run_sync(find_account_ref, runtime.vault, args.account)
            actions = AccountActions(runtime)
            if args.action == "remove":
                removed = await actions.remove(account, actor=cli_actor())
                upstream = {
                    "done": "ended at the provider",
                    "pending": "the provider could not be reached; a running server retries ending it",
                    "unsupported": "the provider offers no revocation: remove the app there",
                    "nothing": "no grant was left to end",
                }[removed.revocation]
                return f"removed {account.display_name}: credentials wiped, agents are told it was removed; grant {upstream}"
            outcome = await getattr(actions, args.action)(account, actor=cli_actor())
            if not outcome.ok:
                raise CliError(outcome.message)
            return outcome.message
        finally:
            await runtime.aclose()

    print(anyio.run(act))
    return EXIT_OK
