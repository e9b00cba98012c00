"""The audit trail: each tool call is one row (tool, caller, account, status, duration) holding neither argument
values nor result bodies; admin actions name their actor; old rows and old lifecycle events are pruned by
housekeeping at their retention."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel
from structlog.testing import capture_logs

from server.auth import create_api_key
from server.housekeeping import Housekeeper
from server.monitoring.audit import AuditTrail
from server.monitoring.metrics import Metrics
from server.vault.models import AuditEvent, utcnow
from simulators.seeding import seed_account
from tests.support.web import call_structured, http_session

pytestmark = pytest.mark.anyio
MARKER = "confidential-quarterly-numbers-7731"


async def test_tool_calls_are_audited_without_arguments_or_results(runtime, settings, github_sim, web):
    seed_account(
        settings,
        runtime.vault,
        "github",
        github_sim.issue_grant({"login": "alice", "id": 3}),
        provider_account_id="3",
        label="work",
    )
    key = create_api_key(runtime.vault, org="acme", user="alice")
    async with http_session(web, key.key) as session:
        created = await call_structured(
            session, "github_create_issue", {"repo": "acme/app", "title": MARKER, "body": MARKER, "account": "work"}
        )
        missing = await call_structured(session, "github_search_issues", {"query": MARKER})

    assert created["status"] == "ok" and missing["status"] == "reauth_required"
    await runtime.audit.written()  # tool calls' rows are written off the answer's path, by the background writer
    rows = list(reversed(runtime.audit.rows(action="tool_call")))
    assert [(r.actor, r.target, r.status, r.detail["tool"]) for r in rows] == [
        ("acme/alice", "acme/alice/github/work", "ok", "github.create_issue"),
        ("acme/alice", "acme/alice/github", "reauth_required", "github.search_issues"),
    ]
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in rows)
    assert {r.detail["via"] for r in rows} == {f"key:{key.record.id}"}
    dumped = json.dumps([r.model_dump(mode="json") for r in runtime.audit.rows(limit=1000)])
    assert MARKER not in dumped and "magic_link" not in dumped and "/connect/" not in dumped


async def test_unknown_detail_keys_are_never_stored(runtime):
    await runtime.audit.record(
        "cli:root",
        "account_removed",
        target="acme/alice/slack",
        revocation="done",
        access_token="should-not-be-here",
        body=MARKER,
    )
    [row] = runtime.audit.rows()
    assert row.detail == {"revocation": "done"}


def test_housekeeping_prunes_audit_rows_and_events_past_their_retention(runtime_sync, settings):
    vault = runtime_sync.vault
    runtime_sync.audit.record_sync("cli:root", "key_created", target="acme/alice")
    vault.events.record("note", account_id=None)
    settings.audit_retention_days, settings.event_retention_days = 30, 7
    now = utcnow()

    assert Housekeeper(settings, vault, clock=lambda: now).prune_history_once() == {"audit_events": 0, "lifecycle_events": 0}
    eight_days_on = Housekeeper(settings, vault, clock=lambda: now + timedelta(days=8)).prune_history_once()
    assert eight_days_on == {"audit_events": 0, "lifecycle_events": 1}
    assert Housekeeper(settings, vault, clock=lambda: now + timedelta(days=31)).prune_history_once() == {
        "audit_events": 1,
        "lifecycle_events": 0,
    }
    assert runtime_sync.audit.rows() == []


async def test_a_tool_calls_row_is_written_by_the_background_writer_after_queued_rows_keep_their_order(runtime):
    trail = runtime.audit
    await trail.record_tool_call("acme/alice", target="acme/alice/slack", status="ok", tool="slack.read_channel")
    await trail.record("cli:root", "account_disabled", target="acme/alice/slack")  # written after what is queued
    await trail.record_tool_call("acme/alice", target="acme/alice/slack", status="ok", tool="slack.post_message")
    await trail.written()
    rows = list(reversed(trail.rows()))
    assert [(r.action, r.detail.get("tool")) for r in rows] == [
        ("tool_call", "slack.read_channel"),
        ("account_disabled", None),
        ("tool_call", "slack.post_message"),
    ]
    assert rows[0].at <= rows[1].at <= rows[2].at  # stamped when recorded, not when written


async def test_a_full_queue_counts_and_logs_what_it_drops(settings, runtime):
    trail = AuditTrail(runtime.vault.engine, metrics=runtime.metrics, max_queued=2)
    with capture_logs() as logs:
        for n in range(4):
            await trail.record_tool_call("acme/alice", target="acme/alice/slack", status="ok", tool=f"t{n}")
    await trail.flush()
    assert [r.detail["tool"] for r in reversed(trail.rows())] == ["t0", "t1"]
    assert trail.dropped == 2
    assert 'grantkeeper_audit_rows_dropped_total{reason="queue_full"} 2.0' in runtime.metrics.render().decode()
    assert [e["rows"] for e in logs if e["event"] == "audit_rows_dropped"] == [1]  # once until a write succeeds
    await trail.aclose()


async def test_rows_the_database_refuses_stay_queued_until_it_takes_them(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")  # no tables yet: every write fails
    metrics = Metrics()
    trail = AuditTrail(engine, metrics=metrics)
    await trail.record_tool_call("acme/alice", target="acme/alice/slack", status="ok", tool="slack.read_channel")
    with pytest.raises(OperationalError):
        await trail.flush()
    with pytest.raises(OperationalError):
        await trail.record("cli:root", "key_created", target="acme/alice")  # an admin action's failure is its caller's
    SQLModel.metadata.create_all(engine, tables=[AuditEvent.__table__])
    await trail.flush()
    assert [r.action for r in trail.rows()] == ["tool_call"] and trail.dropped == 0

    # At shutdown, rows that still cannot be written are counted, never silently gone.
    await trail.record_tool_call("acme/alice", target="acme/alice/slack", status="ok", tool="slack.read_channel")
    AuditEvent.__table__.drop(engine)
    await trail.aclose()
    assert trail.dropped == 1
    assert 'grantkeeper_audit_rows_dropped_total{reason="unwritable_at_shutdown"} 1.0' in metrics.render().decode()
    engine.dispose()
