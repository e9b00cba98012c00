"""The audit trail: each tool call is one row (tool, caller, account, status, duration) holding neither argument
values nor result bodies; admin actions name their actor; old rows and old lifecycle events are pruned by
housekeeping at their retention."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from server.auth import create_api_key
from server.housekeeping import Housekeeper
from server.vault.models import utcnow
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
