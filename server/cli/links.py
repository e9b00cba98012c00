"""`grantkeeper link` and `check`: hand out a connect link, validate every account against its provider."""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Any

import anyio

from server.cli.common import (
    EXIT_OK,
    EXIT_UNHEALTHY,
    ORG_HELP,
    USER_HELP,
    CliError,
    Commands,
    cli_actor,
)
from server.settings import Settings

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import BaseModel

    from server.runtime import Runtime
    from server.vault import ConnectedAccount


def add_link(commands: Commands) -> None:
    """`link`."""
    link = commands.add_parser("link", help="print a single-use link that connects (or reconnects) an account")
    link.add_argument("connector", help="connector name, as in the tool names (slack, github, ...)")
    link.add_argument("--org", help=ORG_HELP)
    link.add_argument("--user", help=USER_HELP)
    link.add_argument("--label", default="default", help="which of the user's accounts for this service")
    link.set_defaults(handler=cmd_link)


def add_check(commands: Commands) -> None:
    """`check`."""
    check = commands.add_parser("check", help="validate every account against its provider")
    check.add_argument("--org", help=ORG_HELP)
    check.add_argument("--user", help=USER_HELP)
    check.set_defaults(handler=cmd_check)


def cmd_link(settings: Settings, args: argparse.Namespace) -> int:
    from server.execute import Caller
    from server.monitoring.audit import AuditTrail
    from server.runtime import Runtime
    from server.vault.models import LABEL_PATTERN

    if not re.fullmatch(LABEL_PATTERN, args.label):
        raise CliError("--label must be lower-case letters, digits, '-' or '_' (at most 64)")
    runtime = Runtime.open(settings)
    if args.connector not in runtime.connectors:
        anyio.run(runtime.aclose)
        raise CliError(f"unknown connector {args.connector!r}; known: {', '.join(sorted(runtime.connectors))}")
    if missing := runtime.connectors[args.connector].missing_client:
        anyio.run(runtime.aclose)
        raise CliError(f"no link printed: {missing}")
    caller = Caller(args.org or settings.org, args.user or settings.user)

    async def issue() -> Any:
        try:
            return await runtime.executor.connect_link(caller, args.connector, args.label, issued_by="operator")
        finally:
            await runtime.aclose()

    account, link = anyio.run(issue)
    AuditTrail(runtime.vault.engine).record_sync(
        cli_actor(), "link_created", account_id=account.id, target=account.display_name, link_id=link.link_id
    )
    print(link.url)
    print(
        f"Open it as {caller.user} (org {caller.org}) to connect {account.display_name}; it works once and "
        f"expires {link.expires_at:%Y-%m-%d %H:%M} UTC. A grantkeeper server must be serving "
        f"{settings.public_url} for it to open.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from server.lifecycle import refreshless, renewal
    from server.results import Ok, ReauthRequired
    from server.runtime import Runtime
    from server.vault import AccountStatus
    from server.vault.models import utcnow

    runtime = Runtime.open(settings)
    unhealthy = 0

    async def check_all() -> None:
        nonlocal unhealthy
        try:
            accounts = await anyio.to_thread.run_sync(runtime.vault.accounts.all, args.org, args.user)
            if not accounts:
                print(
                    "no accounts to check; connect one with `grantkeeper link CONNECTOR` or `grantkeeper accounts add CONNECTOR`"
                )
            for account in accounts:
                if account.status in (AccountStatus.PENDING, AccountStatus.DISABLED):
                    print(f"{account.display_name:<40} skipped ({account.status})")
                    continue
                result = await runtime.executor.probe(account)
                if isinstance(result, Ok):
                    timings = await anyio.to_thread.run_sync(runtime.vault.credentials.timings, account.id)
                    needs_user_at = refreshless.needs_user_at(account, timings)
                    print(
                        f"{account.display_name:<40} ok"
                        + (f", but {refreshless.describe(needs_user_at)}" if needs_user_at else "")
                        + await _renewal(runtime, account, renewal.ending_soon(settings, timings, utcnow()))
                    )
                    continue
                unhealthy += 1
                if isinstance(result, ReauthRequired):
                    print(f"{account.display_name:<40} NEEDS RE-AUTHORIZATION ({result.reason}): {result.magic_link}")
                else:
                    print(f"{account.display_name:<40} {_failure_status(result).upper()} ({getattr(result, 'reason', '')})")
        finally:
            await runtime.aclose()

    anyio.run(check_all)
    return EXIT_UNHEALTHY if unhealthy else EXIT_OK


async def _renewal(runtime: Runtime, account: ConnectedAccount, ends_at: datetime | None) -> str:
    """For a working account whose refresh token ends soon: the link that renews it ahead of time, printed here
    (the operator asked) and nowhere else, or the open one issued before (its URL was shown then, once)."""
    from server.lifecycle import renewal

    if ends_at is None:
        return ""
    ending = f", but its refresh token ends {ends_at:%Y-%m-%d %H:%M} UTC"
    renewing = await renewal.renewal_link(runtime.executor, runtime.vault, account)
    if renewing.issued is None:
        if renewing.open is None:
            return f"{ending}; the account was removed meanwhile"
        return (
            f"{ending}; a renewal link issued {renewing.open.created_at:%H:%M} UTC is open until "
            f"{renewing.open.expires_at:%H:%M} UTC (`grantkeeper link {account.connector} --org {account.org} "
            f"--user {account.user} --label {account.label}` prints another)"
        )
    link = renewing.issued
    await runtime.audit.record(
        cli_actor(), "link_created", account_id=account.id, target=account.display_name, link_id=link.link_id, purpose="reauth"
    )
    return f"{ending}; renewal link for {account.user} (works once, expires {link.expires_at:%H:%M} UTC): {link.url}"


def _failure_status(result: BaseModel) -> str:
    from server.results import FAILURE_MODELS

    return result.status if isinstance(result, FAILURE_MODELS) else "error"
