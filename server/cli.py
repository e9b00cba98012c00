"""The `grantkeeper` command: serve, manage accounts, check grants, run the demo."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import anyio
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from server.monitoring.audit import AuditTrail
from server.monitoring.logging import configure_logging, get_logger
from server.settings import ConfigError, Settings
from server.vault.crypto import VaultKeyError

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        settings = Settings()
    except (ValidationError, ConfigError) as exc:
        print(f"grantkeeper: configuration error: {_config_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        return args.handler(settings, args)
    except (CliError, VaultKeyError) as exc:
        print(f"grantkeeper: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:  # found when connectors load: a declared provider, or its discovery
        print(f"grantkeeper: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperationalError as exc:
        print(f"grantkeeper: database unavailable ({type(exc.orig).__name__}); check GRANTKEEPER_DATABASE_URL", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


class CliError(Exception):
    pass


def cli_actor() -> str:
    """Who the audit trail says acted from this command line: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _config_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        # Never echo input values: a malformed secret must not end up on screen or in a log.
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors(include_input=False))
    return str(exc)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("grantkeeper")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


ORG_HELP = "organisation (default GRANTKEEPER_ORG)"
USER_HELP = "user within the organisation (default GRANTKEEPER_USER, else your login name)"
JSON_HELP = "print JSON instead of a table"


PLUGIN_COMMANDS = "grantkeeper.commands"


def _add_plugin_commands(commands: Any, argv: list[str] | None) -> None:
    """Commands registered by other packages (the `grantkeeper.commands` entry points, such as the example's
    `demo`), so that server/ names no example and no simulator. A built-in command skips the lookup: it scans
    the installed distributions, which `serve` should not pay for at every start."""
    words = sys.argv[1:] if argv is None else argv
    first = next((w for w in words if not w.startswith("-")), None)
    if first is not None and first in commands.choices:
        return
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_COMMANDS):
        entry.load()(commands)


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grantkeeper", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the MCP server (stdio for Claude Desktop)")
    serve.add_argument(
        "--transport",
        choices=["stdio", "sse", "http"],
        default="stdio",
        help="stdio (plus a loopback listener for magic-link pages); http: streamable HTTP at /mcp "
        "and SSE at /sse; sse: SSE only. HTTP callers need an API key (grantkeeper keys create)",
    )
    serve.add_argument("--host", help="listen address (default GRANTKEEPER_LISTEN_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default GRANTKEEPER_LISTEN_PORT, 8765; 0 picks one)")
    serve.add_argument(
        "--require-healthy",
        action="store_true",
        help="check every account first and refuse to start if any needs re-authorization",
    )
    serve.set_defaults(handler=cmd_serve)

    link = commands.add_parser("link", help="print a single-use link that connects (or reconnects) an account")
    link.add_argument("connector", help="connector name, as in the tool names (slack, github, ...)")
    link.add_argument("--org", help=ORG_HELP)
    link.add_argument("--user", help=USER_HELP)
    link.add_argument("--label", default="default", help="which of the user's accounts for this service")
    link.set_defaults(handler=cmd_link)

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

    vault = commands.add_parser("vault", help="the vault key").add_subparsers(metavar="ACTION")
    vault.add_parser("new-key", help="print a new vault key to put first in GRANTKEEPER_VAULT_KEY").set_defaults(
        handler=cmd_vault_new_key
    )
    vault.add_parser("rekey", help="re-seal every secret under the first configured key").set_defaults(handler=cmd_vault_rekey)

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

    status = commands.add_parser("status", help="every account and its health; exits 1 when any needs action")
    status.add_argument("--org", help=ORG_HELP)
    status.add_argument("--user", help=USER_HELP)
    status.add_argument("--json", action="store_true", help=JSON_HELP)
    status.set_defaults(handler=cmd_status)

    events = commands.add_parser("events", help="lifecycle events, newest last")
    events.add_argument("--account", help="its id, or org/user/connector[/label]")
    events.add_argument("--since", help="30m, 2h, 7d, or an ISO-8601 time")
    events.add_argument("--severity", choices=["info", "warning", "error", "critical"], help="at least this severe")
    events.add_argument("--limit", type=int, default=100, help="show at most this many, newest last (default 100)")
    events.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    events.add_argument("--interval", type=float, default=1.0, help="seconds between reads when following")
    events.set_defaults(handler=cmd_events)

    audit = commands.add_parser("audit", help="the audit trail: administrative actions and tool calls")
    audit.add_argument("--since", help="30m, 2h, 7d, or an ISO-8601 time")
    audit.add_argument("--actor", help="only this actor (e.g. acme/alice, cli:root, key:<id>)")
    audit.add_argument("--limit", type=int, default=100, help="show at most this many rows (default 100)")
    audit.add_argument("--json", action="store_true", help=JSON_HELP)
    audit.set_defaults(handler=cmd_audit)

    check = commands.add_parser("check", help="validate every account against its provider")
    check.add_argument("--org", help=ORG_HELP)
    check.add_argument("--user", help=USER_HELP)
    check.set_defaults(handler=cmd_check)

    hooks = commands.add_parser("webhooks", help="signed webhooks (Standard Webhooks) to your own systems").add_subparsers(
        metavar="ACTION"
    )
    hook_add = hooks.add_parser("add", help="add an endpoint; its signing secret is printed once")
    hook_add.add_argument("url", help="https URL (plain http only on loopback)")
    hook_add.add_argument("--events", help="comma-separated event types (default: all); see `webhooks list`")
    hook_add.add_argument("--disabled", action="store_true", help="create it without delivering to it yet")
    hook_add.set_defaults(handler=cmd_webhooks_add)
    hook_list = hooks.add_parser("list", help="list endpoints and their messages (never the secrets)")
    hook_list.add_argument("--json", action="store_true", help=JSON_HELP)
    hook_list.set_defaults(handler=cmd_webhooks_list)
    hook_remove = hooks.add_parser("remove", help="remove an endpoint and the messages queued for it")
    hook_remove.add_argument("endpoint", metavar="ENDPOINT_ID", help="an id from `grantkeeper webhooks list`")
    hook_remove.set_defaults(handler=cmd_webhooks_remove)
    hook_test = hooks.add_parser("test", help="send a signed webhook.test message to an endpoint now")
    hook_test.add_argument("endpoint", metavar="ENDPOINT_ID", help="an id from `grantkeeper webhooks list`")
    hook_test.set_defaults(handler=cmd_webhooks_test)
    replay = hooks.add_parser("replay", help="deliver dead-lettered messages (or one message by its id) again")
    replay.add_argument("message", metavar="MESSAGE_ID", nargs="?", help="a webhook-id (msg_…); default: all dead ones")
    replay.add_argument("--endpoint", metavar="ENDPOINT_ID", help="only messages for this endpoint")
    replay.set_defaults(handler=cmd_webhooks_replay)

    _add_plugin_commands(commands, argv)
    return parser


# ---- serve -------------------------------------------------------------------------------------------
def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from server.background import refusal_message, require_healthy, serve_with_background
    from server.runtime import Runtime
    from server.serve import serve as serve_transport

    if args.port is not None and not 0 <= args.port <= 65535:
        raise CliError("--port must be between 0 and 65535")
    from server.monitoring.tracing import configure_exporting

    if configure_exporting():
        get_logger("grantkeeper").info("trace_export_enabled")
    runtime = Runtime.open(settings)

    async def serve() -> int:
        try:
            if args.require_healthy and (unhealthy := await require_healthy(runtime)):
                print(refusal_message(unhealthy), file=sys.stderr)
                return EXIT_UNHEALTHY
            # The scheduler and health checks run beside the transport; startup validation never delays it.
            await serve_with_background(runtime, lambda: serve_transport(runtime, args.transport, host=args.host, port=args.port))
            return EXIT_OK
        finally:
            await runtime.aclose()

    return anyio.run(serve)


# ---- accounts ----------------------------------------------------------------------------------------
def _read_import(stream: Any) -> dict[str, Any]:
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
    if data.get("expires_at") is not None:
        try:
            moment = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise CliError("expires_at must be an ISO-8601 timestamp") from None
        data["expires_at"] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return data


def cmd_accounts_add(settings: Settings, args: argparse.Namespace) -> int:
    from server.connectors import load_connectors
    from server.lifecycle import refreshless
    from server.lifecycle.grants import credential_write
    from server.lifecycle.oauth import TokenGrant
    from server.runtime import open_vault
    from server.vault import NO_REFRESH_TOKEN, AccountExistsError, AccountStatus
    from server.vault.credentials import refreshless_reason

    connectors = load_connectors(settings)
    if args.connector not in connectors:
        raise CliError(f"unknown connector {args.connector!r}; known: {', '.join(sorted(connectors))}")
    data = _read_import(sys.stdin)
    org, user = args.org or settings.org, args.user or settings.user
    vault, _ = open_vault(settings)
    now = datetime.now(UTC)
    expires_in = data.get("expires_in")
    if data.get("expires_at") is not None:
        expires_in = (data["expires_at"] - now).total_seconds()
    grant = TokenGrant(
        access_token=data["access_token"],
        refresh_token=data.get("refresh_token"),
        token_type=data.get("token_type") or "bearer",
        expires_in=expires_in,
        refresh_expires_in=data.get("refresh_token_expires_in"),
        scope=data.get("scope"),
        provider_account_id=data.get("provider_account_id"),
        identity={},
    )
    # An expires_at in the past gives a negative lifetime: stored as expired, so the first call refreshes.
    write = credential_write(connectors[args.connector], grant, now, refresh_at_fraction=settings.refresh_at_fraction)
    scopes = (data.get("scope") or "").replace(",", " ").split()
    try:
        account = vault.accounts.create(
            org=org,
            user=user,
            connector=args.connector,
            label=args.label,
            provider_account_id=grant.provider_account_id,
            scopes=scopes,
        )
    except AccountExistsError:
        existing = vault.accounts.find(org, user, args.connector, args.label)
        if not args.replace and existing.status != AccountStatus.PENDING:
            raise CliError(f"account {org}/{user}/{args.connector} exists; pass --replace to replace its tokens") from None
        account = existing
        vault.accounts.update_identity(
            account.id,
            grant.provider_account_id or account.provider_account_id,
            account.provider_identity,
            scopes or account.scopes.split(),
        )
    vault.credentials.put(account.id, write)
    vault.accounts.set_status(account.id, AccountStatus.ACTIVE, refreshless_reason(write))
    from server.monitoring.webhook_events import lifecycle_webhook

    vault.events.record(
        "account_imported",
        account_id=account.id,
        connector=args.connector,
        webhook=lifecycle_webhook("account_imported", account, "info", {}),
    )
    print(f"stored {account.display_name} (account id {account.id})")
    if refreshless_reason(write):
        vault.events.record(
            "refresh_token_missing",
            account_id=account.id,
            severity="warning",
            reason=NO_REFRESH_TOKEN,
            needs_user_at=write.access_expires_at.isoformat() if write.access_expires_at else None,
        )
        print(
            f"warning: no refresh token, so {account.display_name} "
            f"{refreshless.describe(write.access_expires_at).removeprefix('no refresh token: ')}",
            file=sys.stderr,
        )
    known = grant.provider_account_id or (account.provider_account_id if args.replace else None)
    if not known:
        _learn_provider_identity(settings, vault.accounts.get(account.id), expired=bool(expires_in and expires_in <= 0))
    return EXIT_OK


def _learn_provider_identity(settings: Settings, account: Any, *, expired: bool) -> None:
    """A reconnect link must not attach someone else's account, so the account should know whose it is. Ask the
    provider (its health probe) with the imported token; an expired token is not refreshed just for this."""
    from server.execute import ProbeOk
    from server.runtime import Runtime

    unknown = (
        "provider account unknown: a reconnect link for it will record whoever completes it; pass "
        "provider_account_id in the JSON to pin it"
    )
    if expired:
        print(f"{unknown} (the imported token is expired, so it was not asked)", file=sys.stderr)
        return
    runtime = Runtime.open(settings)

    async def probe() -> Any:
        try:
            return await runtime.executor.probe(account)
        finally:
            await runtime.aclose()

    result = anyio.run(probe)
    if isinstance(result, ProbeOk) and result.provider_account_id:
        runtime.vault.accounts.update_identity(
            account.id, result.provider_account_id, account.provider_identity, account.scopes.split()
        )
        print(f"provider account {result.provider_account_id}")
    elif isinstance(result, ProbeOk):
        print(f"{unknown} (the provider's check does not name one)", file=sys.stderr)
    else:
        print(f"{unknown}; the provider answered {result.status} ({getattr(result, 'reason', '')})", file=sys.stderr)


def cmd_accounts_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.lifecycle import refreshless
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    rows = []
    for account in vault.accounts.all(args.org, args.user):
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
                "_note": refreshless.describe(needs_user_at) if needs_user_at else None,
            }
        )
    notes = [row.pop("_note") for row in rows]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no accounts")
    else:
        for row, note in zip(rows, notes, strict=True):
            if note:
                print(
                    f"{row['account']:<40} {row['status']}, {note} (send a reconnect link: grantkeeper link "
                    f"{row['account'].split('/')[2]} --org {row['account'].split('/')[0]} "
                    f"--user {row['account'].split('/')[1]})"
                )
                continue
            reason = f" ({row['reason']})" if row["reason"] else ""
            expiry = f"  expires {row['access_expires_at']}" if row.get("access_expires_at") else ""
            print(f"{row['account']:<40} {row['status']}{reason}{expiry}")
    return EXIT_OK


# ---- link --------------------------------------------------------------------------------------------
def cmd_link(settings: Settings, args: argparse.Namespace) -> int:
    from server.execute import Caller
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


# ---- keys --------------------------------------------------------------------------------------------
def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth import create_api_key
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


# ---- webhooks ----------------------------------------------------------------------------------------
def cmd_webhooks_add(settings: Settings, args: argparse.Namespace) -> int:
    from server.monitoring.webhook_events import EVENT_TYPES
    from server.monitoring.webhooks import check_webhook_url, printable_url
    from server.runtime import open_vault

    check_webhook_url(args.url)
    events = [e.strip() for e in args.events.split(",") if e.strip()] if args.events else list(EVENT_TYPES)
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise CliError(f"unknown event type(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(EVENT_TYPES)}")
    vault, _ = open_vault(settings)
    endpoint, secret = vault.outbox.add_endpoint(args.url, events, enabled=not args.disabled)
    print(secret)
    print(
        f"webhook endpoint {endpoint.id} -> {printable_url(endpoint.url)} for {', '.join(endpoint.event_types)}. "
        "The signing secret above is shown only now; give it to the receiver to verify "
        "webhook-signature (Standard Webhooks).",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_webhooks_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.monitoring.webhook_events import EVENT_TYPES
    from server.monitoring.webhooks import printable_url
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    counts = vault.outbox.message_counts()
    rows = [
        {
            "id": e.id,
            "url": printable_url(e.url),
            "events": e.event_types,
            "enabled": e.enabled,
            "created_at": e.created_at.isoformat(),
            "messages": {status: counts.get((e.id, status), 0) for status in ("pending", "delivered", "dead")},
        }
        for e in vault.outbox.list_endpoints()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no webhook endpoints (grantkeeper webhooks add URL)")
    for row in rows:
        m = row["messages"]
        print(
            f"{row['id']}  {row['url']}  {'enabled' if row['enabled'] else 'disabled'}  "
            f"pending {m['pending']}, delivered {m['delivered']}, dead {m['dead']}  [{', '.join(row['events'])}]"
        )
    print(f"event types: {', '.join(EVENT_TYPES)}", file=sys.stderr)
    return EXIT_OK


def cmd_webhooks_remove(settings: Settings, args: argparse.Namespace) -> int:
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    if not vault.outbox.remove_endpoint(args.endpoint):
        raise CliError(f"no webhook endpoint with id {args.endpoint!r}")
    print(f"removed webhook endpoint {args.endpoint}")
    return EXIT_OK


def cmd_webhooks_test(settings: Settings, args: argparse.Namespace) -> int:
    import httpx2

    from server.monitoring.webhook_events import TEST_EVENT_TYPE
    from server.monitoring.webhooks import DeliveryFailed, message_body, printable_url, send_signed
    from server.runtime import open_vault
    from server.vault.outbox import new_message_id

    vault, _ = open_vault(settings)
    endpoint = vault.outbox.get_endpoint(args.endpoint)
    if endpoint is None:
        raise CliError(f"no webhook endpoint with id {args.endpoint!r}")
    now = datetime.now(UTC)
    message_id = new_message_id()
    body = message_body({"type": TEST_EVENT_TYPE, "timestamp": now.isoformat(), "data": {"endpoint": endpoint.id}})

    async def send() -> int:
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            return await send_signed(
                http,
                endpoint.url,
                vault.outbox.endpoint_secret(endpoint),
                message_id,
                body,
                at=now,
                timeout=settings.webhook_timeout_seconds,
            )

    try:
        status = anyio.run(send)
    except DeliveryFailed as failure:
        print(f"webhook test {message_id} to {printable_url(endpoint.url)} failed: {failure.reason}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"webhook test {message_id} to {printable_url(endpoint.url)}: HTTP {status}")
    return EXIT_OK


def cmd_webhooks_replay(settings: Settings, args: argparse.Namespace) -> int:
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    count = vault.outbox.replay(message_id=args.message, endpoint_id=args.endpoint)
    if args.message and not count:
        raise CliError(f"no delivered or dead message {args.message!r}")
    print(f"{count} message(s) queued again; a running server delivers them")
    return EXIT_OK


# ---- sessions ----------------------------------------------------------------------------------------
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


# ---- vault key ---------------------------------------------------------------------------------------
def cmd_vault_new_key(settings: Settings, args: argparse.Namespace) -> int:
    from server.vault.crypto import new_key_spec

    print(new_key_spec())
    print(
        "Put it first in GRANTKEEPER_VAULT_KEY (new,old), restart the workers, then run `grantkeeper vault rekey`; "
        "drop the old key once rekey reports nothing left.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_vault_rekey(settings: Settings, args: argparse.Namespace) -> int:
    from server.runtime import open_vault

    vault, _ = open_vault(settings)
    counts = vault.reseal_with_primary_key()
    print(
        f"re-sealed under key {vault.keyring.primary_id}: {counts.credentials} credential(s), "
        f"{counts.magic_link_flows} link flow(s); {counts.credentials_current} credential(s) already were"
    )
    if counts.unreadable:
        print(f"{counts.unreadable} secret(s) did not open with any configured key and were left as they are", file=sys.stderr)
        return EXIT_UNHEALTHY
    return EXIT_OK


# ---- check -------------------------------------------------------------------------------------------
def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from server.lifecycle import refreshless
    from server.results import Ok, ReauthRequired
    from server.runtime import Runtime
    from server.vault import AccountStatus

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
                    )
                    continue
                unhealthy += 1
                if isinstance(result, ReauthRequired):
                    print(f"{account.display_name:<40} NEEDS RE-AUTHORIZATION ({result.reason}): {result.magic_link}")
                else:
                    print(f"{account.display_name:<40} {result.status.upper()} ({getattr(result, 'reason', '')})")
        finally:
            await runtime.aclose()

    anyio.run(check_all)
    return EXIT_UNHEALTHY if unhealthy else EXIT_OK


# ---- the console on the command line -----------------------------------------------------------------
def find_account_ref(vault: Any, ref: str) -> Any:
    """An account by id or by org/user/connector[/label]."""
    parts = ref.split("/")
    if len(ref) > 700 or not ref:
        raise CliError("ACCOUNT must be an account id or org/user/connector[/label]")
    if len(parts) in (3, 4):
        account = vault.accounts.find(*parts[:3], parts[3] if len(parts) == 4 else "default")
    elif len(parts) == 1:
        try:
            account = vault.accounts.get(ref)
        except LookupError:
            account = None
    else:
        raise CliError("ACCOUNT must be an account id or org/user/connector[/label]")
    if account is None:
        raise CliError(f"no account {ref!r} (see grantkeeper status)")
    return account


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


def _relative(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    text = f"{span / 86400:.0f}d" if span >= 86400 else f"{span / 3600:.0f}h" if span >= 3600 else f"{span / 60:.0f}m"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


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
    from server.console.history import BadTimeFilter, event_line, last_event_id, lifecycle_events, parse_since
    from server.runtime import open_vault

    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be between 1 and 1000")
    if not 0.05 <= args.interval <= 3600:
        raise CliError("--interval must be between 0.05 and 3600 seconds")
    vault, _ = open_vault(settings)
    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except BadTimeFilter as exc:
        raise CliError(str(exc)) from None
    account_ids = [find_account_ref(vault, args.account).id] if args.account else None
    query = {"account_ids": account_ids, "min_severity": args.severity}
    last = last_event_id(vault)  # where following starts: nothing that happens from here on is missed
    for event in reversed(lifecycle_events(vault, since=since, limit=args.limit, **query)):
        print(event_line(event))
    if not args.follow:
        return EXIT_OK
    print("following new events (Ctrl-C to stop)", file=sys.stderr, flush=True)
    sys.stdout.flush()
    while True:
        for event in lifecycle_events(vault, after_id=last, limit=1000, **query):
            print(event_line(event), flush=True)
            last = event.id
        time.sleep(args.interval)  # polling the database: events come from every worker of the fleet


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from server.console.history import BadTimeFilter, parse_since
    from server.runtime import open_vault

    if not 1 <= args.limit <= 10000:
        raise CliError("--limit must be between 1 and 10000")
    vault, _ = open_vault(settings)
    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except BadTimeFilter as exc:
        raise CliError(str(exc)) from None
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
