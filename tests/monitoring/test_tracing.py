"""OpenTelemetry: the span tree of one tool call (account resolution, refresh with its lease wait and token
request, provider requests and the retry), with the attributes operators filter by and never a secret; the trace
id in the call's log lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from server.monitoring.logging import configure_logging
from server.monitoring.tracing import configure_exporting
from simulators.seeding import seed_account
from tests.support.logs import logging_restored
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once; OpenTelemetry allows no second one) exporting to memory."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def ours(finished: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in finished if s.name.startswith("grantkeeper.")]


def children(finished: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted(
        (s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id), key=lambda s: s.start_time
    )


def everything_said(finished: list[ReadableSpan]) -> str:
    """Every name, attribute, event and status message of every span, ours and the SDK's."""
    parts = []
    for span in finished:
        parts += [span.name, json.dumps(dict(span.attributes or {}), default=str), str(span.status.description)]
        for event in span.events:
            parts += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
    return "\n".join(parts)


async def test_a_call_that_refreshes_reactively_and_retries_once_has_a_span_tree_without_secrets(
    runtime, settings, slack_sim, spans
):
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens)
    slack_sim.expire_access_tokens()  # our copy still looks fresh; Slack answers token_expired

    stream = io.StringIO()
    with logging_restored():
        configure_logging("info", "json", stream)
        async with mcp_client(runtime) as client:
            result = await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": 2})

    assert result["status"] == "ok"
    finished = list(spans.get_finished_spans())
    [tool_call] = [s for s in finished if s.name == "grantkeeper.tool_call"]
    assert {
        k: tool_call.attributes[k]
        for k in ("grantkeeper.tool", "grantkeeper.connector", "grantkeeper.status", "grantkeeper.account_id")
    } == {
        "grantkeeper.tool": "slack.read_channel",
        "grantkeeper.connector": "slack",
        "grantkeeper.status": "ok",
        "grantkeeper.account_id": account.id,
    }
    # Under the SDK's server span for tools/call, in the same trace.
    assert tool_call.parent is not None
    assert {s.context.trace_id for s in ours(finished)} == {tool_call.context.trace_id}

    resolve, request = children(finished, tool_call)
    assert resolve.name == "grantkeeper.resolve_account" and resolve.attributes["grantkeeper.account_id"] == account.id
    assert request.name == "grantkeeper.provider_request"
    assert (request.attributes["grantkeeper.attempt"], request.attributes["grantkeeper.retry"]) == (1, False)
    refresh, retry = children(finished, request)
    assert refresh.name == "grantkeeper.refresh"
    assert dict(refresh.attributes) == {
        "grantkeeper.connector": "slack",
        "grantkeeper.account_id": account.id,
        "grantkeeper.trigger": "reactive",
    }
    assert [s.name for s in children(finished, refresh)] == ["grantkeeper.lease_wait", "grantkeeper.token_request"]
    assert retry.name == "grantkeeper.provider_retry"
    assert (retry.attributes["grantkeeper.http_status"], retry.attributes["grantkeeper.verdict"]) == (200, "ok")
    assert len(ours(finished)) == 7  # nothing else: one tool call, one refresh, one retry

    said = everything_said(finished)
    stored = runtime.vault.credentials.read(account.id)
    for secret in (
        tokens.access_token,
        tokens.refresh_token,
        stored.access_token,
        stored.refresh_token,
        settings.provider("slack").client_secret,
        "C0GENERAL",
    ):
        assert secret and secret not in said

    # The call's log lines carry its trace id.
    trace_id = format(tool_call.context.trace_id, "032x")
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    refreshed = [line for line in lines if line.get("event") in ("api_auth_failure", "refresh_succeeded")]
    assert len(refreshed) == 2 and {line["trace_id"] for line in refreshed} == {trace_id}


@pytest.mark.usefixtures("retry_waits_skipped")
async def test_a_transient_failure_shows_as_a_second_attempt_and_the_failure_class_is_recorded(
    runtime, settings, slack_sim, spans
):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.fail(count=1, status=503)

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", {"channel": "C0GENERAL", "limit": 1})

    assert result["status"] == "ok"
    finished = list(spans.get_finished_spans())
    [tool_call] = [s for s in finished if s.name == "grantkeeper.tool_call"]
    _, first, second = children(finished, tool_call)
    assert (first.attributes["grantkeeper.attempt"], first.attributes["grantkeeper.failure_class"]) == (1, "UpstreamCallError")
    assert not first.status.is_ok
    assert (second.attributes["grantkeeper.attempt"], second.attributes["grantkeeper.retry"]) == (2, True)
    assert second.status.is_unset


def test_exporting_switches_on_only_through_the_standard_variables(monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert configure_exporting() is False
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert configure_exporting() is False
