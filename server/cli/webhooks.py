"""`grantkeeper webhooks`: signed webhook endpoints, added, listed, removed, tested, and their messages replayed."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import anyio

from server.cli.common import (
    EXIT_OK,
    EXIT_UNHEALTHY,
    JSON_HELP,
    CliError,
    Commands,
)
from server.settings import Settings


def add_webhooks(commands: Commands) -> None:
    """`webhooks add|list|remove|test|replay`."""
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
    endpoints = vault.outbox.list_endpoints()
    rows = [
        {
            "id": e.id,
            "url": printable_url(e.url),
            "events": e.event_types,
            "enabled": e.enabled,
            "created_at": e.created_at.isoformat(),
            "messages": {status: counts.get((e.id, status), 0) for status in ("pending", "delivered", "dead")},
        }
        for e in endpoints
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no webhook endpoints (grantkeeper webhooks add URL)")
    for endpoint in endpoints:
        m = {status: counts.get((endpoint.id, status), 0) for status in ("pending", "delivered", "dead")}
        print(
            f"{endpoint.id}  {printable_url(endpoint.url)}  {'enabled' if endpoint.enabled else 'disabled'}  "
            f"pending {m['pending']}, delivered {m['delivered']}, dead {m['dead']}  [{', '.join(endpoint.event_types)}]"
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
