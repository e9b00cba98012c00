"""Signed webhooks from the durable outbox: every event reaches a receiver that verifies it with the
`standardwebhooks` library — exactly once after de-duplication, in order per account, across two worker processes
and a receiver that is down for the first part of the run; a tampered or replayed delivery is refused; a worker
killed between writing an event and delivering it loses nothing; the signing secret is shown once and never again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import anyio
import httpx2
import pytest
from sqlalchemy import update
from sqlmodel import Session
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.lifecycle.crashpoints import CRASH_AT_ENV
from server.monitoring.webhook_events import EVENT_TYPES
from server.monitoring.webhooks import CRASH_BEFORE_SEND, WebhookDeliverer, check_webhook_url
from server.settings import ConfigError, Settings
from server.vault.models import WebhookMessage, utcnow
from simulators import SimulatorServer
from simulators.fleet import release_together, run_until_it_dies, spawn_worker
from simulators.seeding import seed_account
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override

pytestmark = pytest.mark.anyio


class Receiver:
    """A webhook consumer as an operator would write one: verify with the library, then accept. `up` is the switch
    that makes it answer 503 (down) without looking at the request."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.up = True
        self.down_hits = 0
        self.accepted: list[tuple[str, dict]] = []  # (webhook-id, payload) in arrival order
        self.refused: list[str] = []
        self.raw: list[tuple[bytes, dict[str, str]]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        if not self.up:
            self.down_hits += 1
            return Response(status_code=503)
        body = await request.body()
        headers = dict(request.headers)
        self.raw.append((body, headers))
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as error:
            self.refused.append(str(error))
            return Response(status_code=400)
        self.accepted.append((headers["webhook-id"], payload))
        return Response(status_code=204)

    def unique(self) -> list[tuple[str, dict]]:
        seen: set[str] = set()
        first = []
        for message_id, payload in self.accepted:
            if message_id not in seen:
                seen.add(message_id)
                first.append((message_id, payload))
        return first


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with SimulatorServer(receiver.app) as server:
        yield receiver, f"{server.url}/hook"


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in {
        "WEBHOOK_BACKOFF_INITIAL_SECONDS": "0.05",
        "WEBHOOK_BACKOFF_MAX_SECONDS": "0.2",
        "WEBHOOK_MAX_ATTEMPTS": "1000",
        "WEBHOOK_TIMEOUT_SECONDS": "2",
        "WEBHOOK_POLL_SECONDS": "0.2",
    }.items():
        monkeypatch.setenv(f"GRANTKEEPER_{key}", value)
    return Settings()


def outbox(vault) -> list[WebhookMessage]:
    return vault.outbox.messages()


def wait_for(condition, timeout: float = 60) -> None:
    """Wait for a condition another process brings about (checked, not assumed after a fixed time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def due_now(vault, at) -> None:
    with Session(vault.engine) as session:
        session.execute(update(WebhookMessage).values(next_attempt_at=at))
        session.commit()


def heads(messages: list[WebhookMessage]) -> list[WebhookMessage]:
    """The first message of each account (for one endpoint)."""
    first: dict[str, WebhookMessage] = {}
    for message in sorted(messages, key=lambda m: m.id):
        first.setdefault(message.order_key, message)
    return list(first.values())


def lifecycle_scenario(settings, vault, sim) -> dict[str, str]:
    """Four accounts with expired tokens, two of them with revoked grants."""
    ids = {}
    for user in ("alice", "bob", "carol", "dave"):
        tokens = sim.issue_grant()
        ids[user] = seed_account(settings, vault, "slack", tokens, user=user, expired=True).id
        if user in ("bob", "dave"):
            sim.revoke(token=tokens.refresh_token)
    return ids


def assert_every_event_once_in_order(receiver: Receiver, vault) -> list[WebhookMessage]:
    messages = outbox(vault)
    assert messages and all(m.status == "delivered" for m in messages), [(m.status, m.last_error) for m in messages]
    received = receiver.unique()
    assert sorted(mid for mid, _ in received) == sorted(m.message_id for m in messages)
    by_id = {m.message_id: m for m in messages}
    for payload_id, payload in received:
        assert payload["type"] == by_id[payload_id].event_type
    for key in {m.order_key for m in messages}:
        arrived = [by_id[mid].id for mid, _ in received if by_id[mid].order_key == key]
        assert arrived == sorted(arrived), f"account {key}: delivered out of order"
    assert receiver.refused == []
    return messages


def test_two_workers_deliver_every_event_once_in_order_after_the_receiver_comes_back(runtime_sync, settings, slack_sim, receiver):
    hook, url = receiver
    _, hook.secret = runtime_sync.vault.outbox.add_endpoint(url, list(EVENT_TYPES))
    ids = lifecycle_scenario(settings, runtime_sync.vault, slack_sim)
    hook.up = False
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}

    workers = [spawn_worker(env, ["--mode", "lifecycle", "--calls", "5"]) for _ in range(2)]
    try:
        release_together(workers)
        for worker in workers:
            assert worker.stdout.readline().strip() == "probed", worker.stderr.read()[-3000:]
        # The first message of every account was tried, and refused, while the receiver was down; the later ones
        # wait behind it (in order per account).
        wait_for(lambda: all(m.attempts >= 1 for m in heads(outbox(runtime_sync.vault))))
        written = outbox(runtime_sync.vault)
        assert {m.status for m in written} == {"pending"}
        first = {m.id for m in heads(written)}
        assert [m.attempts for m in written if m.id not in first] == [0] * (len(written) - len(first))
        hook.up = True
        for worker in workers:
            worker.stdin.write("drain\n")
            worker.stdin.flush()
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err[-3000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    messages = assert_every_event_once_in_order(hook, runtime_sync.vault)
    assert hook.down_hits >= len(heads(messages))
    types = {(m.order_key, m.event_type) for m in messages}
    for user in ("bob", "dave"):
        assert {(ids[user], kind) for kind in ("account.refresh_failed", "account.reauth_required", "alert.opened")} <= types
        revoked = [m.event_type for m in messages if m.order_key == ids[user]]
        assert revoked.index("account.refresh_failed") < revoked.index("account.reauth_required")
    assert sum(o["delivered"] for o in outputs) >= len(messages)
    for _, payload in hook.unique():
        assert payload["data"]["account"]["id"] in ids.values()


async def test_tampered_or_replayed_deliveries_are_refused_by_the_receivers_verification(runtime, settings, slack_sim, receiver):
    hook, url = receiver
    _, hook.secret = runtime.vault.outbox.add_endpoint(url, list(EVENT_TYPES))
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens, expired=True)
    slack_sim.revoke(token=tokens.refresh_token)
    await runtime.executor.probe(account)

    # Signed ten minutes ago (a delivery captured then and replayed now): the receiver refuses it, and the
    # message stays pending for a proper delivery.
    due_now(runtime.vault, utcnow() - timedelta(hours=1))  # due on the stale clock too
    stale = WebhookDeliverer(settings, runtime.vault, clock=lambda: utcnow() - timedelta(minutes=10))
    async with httpx2.AsyncClient() as http:
        assert await stale.deliver_due(http)
    assert hook.accepted == [] and hook.refused and all("too old" in r for r in hook.refused)
    assert all(m.status == "pending" for m in outbox(runtime.vault))
    due_now(runtime.vault, utcnow())  # no waiting out the backoff the refusal caused

    stats = await WebhookDeliverer(settings, runtime.vault).run_until_idle()
    assert stats.delivered == len(outbox(runtime.vault)) == len(hook.accepted) >= 2
    hook.refused.clear()

    body, headers = hook.raw[-1]
    forged = {
        "body": (body.replace(account.id.encode(), b"0" * 32), headers),
        "webhook-id": (body, {**headers, "webhook-id": "msg_" + "f" * 32}),
        "timestamp": (body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)}),
        "signature": (body, {**headers, "webhook-signature": "v1," + "A" * 44}),
    }
    async with httpx2.AsyncClient() as http:
        for what, (forged_body, forged_headers) in forged.items():
            response = await http.post(url, content=forged_body, headers=forged_headers)
            assert response.status_code == 400, what
    assert len(hook.refused) == len(forged)
    assert len(hook.accepted) == stats.delivered  # nothing forged got in


def test_a_worker_killed_between_writing_an_event_and_delivering_it_loses_nothing(runtime_sync, settings, slack_sim, receiver):
    hook, url = receiver
    _, hook.secret = runtime_sync.vault.outbox.add_endpoint(url, list(EVENT_TYPES))
    tokens = slack_sim.issue_grant()
    seed_account(settings, runtime_sync.vault, "slack", tokens, expired=True)
    slack_sim.revoke(token=tokens.refresh_token)
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}

    ended = run_until_it_dies({**env, CRASH_AT_ENV: CRASH_BEFORE_SEND}, "lifecycle")

    assert ended.killed, ended.stderr[-2000:]
    written = outbox(runtime_sync.vault)
    assert written and all(m.status == "pending" for m in written)
    assert hook.accepted == []  # it died holding the delivery lease, before sending
    held = [m for m in written if m.lease_owner is not None]
    assert held, "the dead worker claimed a message"
    with Session(runtime_sync.vault.engine) as session:  # its lease runs out (instead of sleeping until it does)
        session.execute(update(WebhookMessage).values(lease_until=utcnow() - timedelta(seconds=1)))
        session.commit()

    survivor = WebhookDeliverer(settings, runtime_sync.vault)
    stats = anyio.run(survivor.run_until_idle)

    messages = assert_every_event_once_in_order(hook, runtime_sync.vault)
    # Everything the dead worker wrote (on PostgreSQL a COMMIT it sent as it died may land a moment later).
    assert stats.delivered == len(messages)
    assert {m.message_id for m in written} <= {m.message_id for m in messages}
    assert {m.id for m in held} <= {m.id for m in messages}


async def test_dead_letter_after_the_retry_budget_and_replay(runtime, settings, receiver, monkeypatch):
    hook, url = receiver
    monkeypatch.setattr(settings, "webhook_max_attempts", 2)
    _, hook.secret = runtime.vault.outbox.add_endpoint(url, ["account.removed"])
    account = runtime.vault.accounts.create(org="acme", user="alice", connector="slack")
    await runtime.events.record("account_removed", account)
    hook.up = False

    stats = await WebhookDeliverer(settings, runtime.vault).run_until_idle()

    assert (stats.failed, stats.dead, hook.down_hits) == (1, 1, 2)
    [message] = outbox(runtime.vault)
    assert (message.status, message.attempts, message.last_error) == ("dead", 2, "http_503")
    hook.up = True
    assert runtime.vault.outbox.replay() == 1
    assert (await WebhookDeliverer(settings, runtime.vault).run_until_idle()).delivered == 1
    assert [payload["type"] for _, payload in hook.accepted] == ["account.removed"]


async def test_redirects_are_not_followed_and_answers_are_read_only_so_far(runtime, settings):
    async def redirect(request: Request) -> Response:
        return Response(status_code=307, headers={"location": "http://127.0.0.1:9/elsewhere"})

    async def huge(request: Request) -> Response:
        return Response(b"x" * (5 * 1024 * 1024), status_code=200)

    app = Starlette(routes=[Route("/redirect", redirect, methods=["POST"]), Route("/huge", huge, methods=["POST"])])
    with SimulatorServer(app) as server:
        runtime.vault.outbox.add_endpoint(f"{server.url}/redirect", ["account.removed"])
        runtime.vault.outbox.add_endpoint(f"{server.url}/huge", ["account.removed"])
        account = runtime.vault.accounts.create(org="acme", user="alice", connector="slack")
        await runtime.events.record("account_removed", account)
        async with httpx2.AsyncClient() as http:
            await WebhookDeliverer(settings, runtime.vault).deliver_due(http)
    by_error = sorted((m.status, m.last_error) for m in outbox(runtime.vault))
    assert by_error == [("delivered", None), ("pending", "redirect_307")]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "ftp://127.0.0.1/x",
        "https://user:pw@example.com/h",
        "not a url",
        "https://" + "a" * 2100 + ".example/",
    ],
)
def test_webhook_urls_must_be_https_except_on_loopback(url):
    with pytest.raises(ConfigError):
        check_webhook_url(url)


def test_the_signing_secret_is_shown_once_and_never_again(env, receiver):
    hook, url = receiver

    def grantkeeper(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "server", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
        )

    added = grantkeeper("webhooks", "add", url, "--events", "account.removed,alert.opened")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert secret.startswith("whsec_")
    hook.secret = secret
    endpoint_id = added.stderr.split()[2]
    outputs = [added.stderr]
    for args in (
        ("webhooks", "list"),
        ("webhooks", "list", "--json"),
        ("webhooks", "test", endpoint_id),
        ("webhooks", "replay"),
        ("webhooks", "remove", endpoint_id),
    ):
        result = grantkeeper(*args)
        assert result.returncode == 0, (args, result.stderr)
        outputs += [result.stdout, result.stderr]
    assert [payload["type"] for _, payload in hook.accepted] == ["webhook.test"]  # signed with that secret
    assert "account.removed" in outputs[1]
    for output in outputs:
        assert secret not in output and secret.removeprefix("whsec_") not in output
    refused = grantkeeper("webhooks", "add", "http://example.com/hook")
    assert refused.returncode == 2 and "https" in refused.stderr
    unknown = grantkeeper("webhooks", "add", url, "--events", "account.nosuch")
    assert unknown.returncode == 2 and "account.nosuch" in unknown.stderr


async def test_the_secret_is_sealed_and_stays_out_of_events_and_logs(runtime, settings, receiver, capsys):
    from tests.support.stored import assert_no_plaintext, database_contents

    hook, url = receiver
    _, hook.secret = runtime.vault.outbox.add_endpoint(url, list(EVENT_TYPES))
    account = runtime.vault.accounts.create(org="acme", user="alice", connector="slack")
    await runtime.events.record("account_removed", account)
    await WebhookDeliverer(settings, runtime.vault).run_until_idle()
    assert len(hook.accepted) == 1
    events = json.dumps([e.detail for e in runtime.vault.events.recent()])
    payloads = json.dumps([m.payload for m in outbox(runtime.vault)])
    captured = capsys.readouterr()
    for text in (events, payloads, captured.out, captured.err):
        assert hook.secret not in text
    assert_no_plaintext(database_contents(settings, runtime.vault.engine), [hook.secret, hook.secret.removeprefix("whsec_")])


async def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(runtime, settings, monkeypatch):
    monkeypatch.setattr(settings, "webhook_timeout_seconds", 0.5)
    release = threading.Event()  # the receiver runs on its own thread and loop

    async def stalls(request: Request) -> Response:
        await anyio.to_thread.run_sync(release.wait, 30)  # answers only after the deadline, when the test lets it
        return Response(status_code=204)

    with SimulatorServer(Starlette(routes=[Route("/hook", stalls, methods=["POST"])])) as server:
        runtime.vault.outbox.add_endpoint(f"{server.url}/hook", ["account.removed"])
        account = runtime.vault.accounts.create(org="acme", user="alice", connector="slack")
        await runtime.events.record("account_removed", account)
        try:
            async with httpx2.AsyncClient() as http:
                await WebhookDeliverer(settings, runtime.vault).deliver_due(http)
        finally:
            release.set()
    [message] = outbox(runtime.vault)
    assert (message.status, message.attempts, message.last_error) == ("pending", 1, "timeout")
