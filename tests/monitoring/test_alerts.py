"""Alerts reach the operator once per incident — log and webhook — and say when the incident is over."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.runtime import Runtime
from server.settings import Settings
from simulators import SimulatorServer
from simulators.seeding import seed_account
from tests.support.cooldown import end_the_cooldown
from tests.support.mcp import call, mcp_client
from tests.support.web import web_server

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}


class Receiver:
    def __init__(self) -> None:
        self.alerts: list[dict] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.alerts.append(await request.json())
        return Response(status_code=204)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with SimulatorServer(receiver.app) as server:
        yield receiver, f"{server.url}/hook"


@pytest.fixture
async def alerting_runtime(env, receiver, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_ALERT_WEBHOOK_URL", receiver[1])
    runtime = Runtime.open(Settings())
    yield runtime
    await runtime.aclose()


async def test_three_failed_refreshes_raise_one_alert_and_recovery_resolves_it(alerting_runtime, slack_sim, receiver):
    runtime, (hook, _) = alerting_runtime, receiver
    account = seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_fail(count=3, status=503)

    async with mcp_client(runtime) as client:
        failed = []
        for _ in range(3):  # each after the cooldown of the failure before it (one token request each)
            end_the_cooldown(runtime.vault, account.id)
            failed.append((await call(client, "slack_read_channel", READ))["status"])
        end_the_cooldown(runtime.vault, account.id)
        recovered = await call(client, "slack_read_channel", READ)
    await runtime.events.alerts.drain()

    assert (*failed, recovered["status"]) == ("upstream_error", "upstream_error", "upstream_error", "ok")
    assert slack_sim.counters.token_requests == 4
    assert [(a["alert"], a["severity"]) for a in hook.alerts] == [("refresh_failing", "error"), ("refresh_failing", "resolved")]
    assert all(a["account"] == "acme/alice/slack" for a in hook.alerts)


async def test_a_revoked_grant_is_one_critical_alert_however_often_the_agent_calls(alerting_runtime, slack_sim, receiver):
    runtime, (hook, _) = alerting_runtime, receiver
    seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.revoke()

    async with mcp_client(runtime) as client:
        for _ in range(3):
            assert (await call(client, "slack_read_channel", READ))["status"] == "reauth_required"
    await runtime.events.alerts.drain()

    assert [(a["alert"], a["severity"], a["reason"]) for a in hook.alerts] == [("reauth_required", "critical", "token_revoked")]
    assert "magic" not in str(hook.alerts) and "/connect/" not in str(hook.alerts)


async def test_tool_calls_and_lifecycle_events_are_counted_for_prometheus(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    async with mcp_client(runtime) as client:
        await call(client, "slack_read_channel", READ)

    exposition = runtime.metrics.render().decode()  # this runtime's registry: no other test's calls in it
    assert 'grantkeeper_tool_calls_total{status="ok",tool="slack.read_channel"} 1.0' in exposition
    assert 'grantkeeper_lifecycle_events_total{connector="slack",kind="refresh_succeeded"}' in exposition
    assert "grantkeeper_tool_call_seconds_bucket" in exposition


async def test_the_web_app_serves_metrics_and_health(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    async with mcp_client(runtime) as client:
        await call(client, "slack_read_channel", READ)
    other = Runtime.open(Settings())  # another runtime in the same process counts apart
    try:
        async with web_server(runtime) as url, web_server(other) as other_url, httpx2.AsyncClient() as client:
            metrics = await client.get(f"{url}/metrics")
            others = await client.get(f"{other_url}/metrics")
            health = await client.get(f"{url}/healthz")
    finally:
        await other.aclose()
    counted = 'grantkeeper_tool_calls_total{status="ok",tool="slack.read_channel"} 1.0'
    assert metrics.status_code == 200 and counted in metrics.text
    assert others.status_code == 200 and "grantkeeper_tool_calls_total" in others.text and "slack.read_channel" not in others.text
    assert health.json() == {"status": "ok"}


async def test_two_workers_seeing_the_same_incident_send_one_alert_and_one_resolution(env, slack_sim, receiver, monkeypatch):
    hook, url = receiver
    monkeypatch.setenv("GRANTKEEPER_ALERT_WEBHOOK_URL", url)
    workers = [Runtime.open(Settings()), Runtime.open(Settings())]
    try:
        account = seed_account(workers[0].settings, workers[0].vault, "slack", slack_sim.issue_grant())
        for worker in workers:  # each worker found the grant dead (a tool call in one, a health check in the other)
            await worker.events.record("reauth_required", account, severity="critical", reason="token_revoked")
        for worker in workers:  # and each saw it come back
            await worker.events.record("reauthorized", account)
        for worker in workers:
            await worker.events.alerts.drain()
    finally:
        for worker in workers:
            await worker.aclose()

    assert [(a["alert"], a["severity"]) for a in hook.alerts] == [
        ("reauth_required", "critical"),
        ("reauth_required", "resolved"),
    ]
