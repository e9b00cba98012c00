"""Health checks find a revoked or deactivated grant before an agent does, and a fleet shares them."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from sqlalchemy import update
from sqlmodel import Session

from server.background import health_monitor
from server.runtime import Runtime
from server.vault.models import ConnectedAccount, utcnow
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}


def kinds(vault, account_id: str) -> list[str]:
    return [event.kind for event in reversed(vault.events.recent(account_id))]


async def test_a_grant_revoked_at_slack_is_reported_by_the_health_check_before_any_tool_call(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.revoke()

    reports = await health_monitor(runtime).run_due()

    assert [(r.account, r.outcome, r.reason) for r in reports] == [("acme/alice/slack", "reauth_required", "token_revoked")]
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "token_revoked")
    assert stored.health_checked_at is not None
    assert kinds(runtime.vault, account.id)[-3:] == ["status_changed", "reauth_required", "health_checked"]
    assert slack_sim.counters.endpoint("auth.test") == 1 and slack_sim.counters.api_requests == 1
    assert slack_sim.counters.token_requests == 0  # token_revoked is final: no refresh attempted

    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)
    assert (result["status"], result["reason"]) == ("reauth_required", "token_revoked")
    assert slack_sim.counters.api_requests == 1  # the agent's call never reached Slack


async def test_a_revoked_github_grant_is_found_by_the_health_check(runtime, settings, github_sim):
    account = seed_account(settings, runtime.vault, "github", github_sim.issue_grant())
    github_sim.revoke()  # GET /user answers 401; the refresh that follows gets bad_refresh_token

    reports = await health_monitor(runtime).run_due()

    assert [(r.outcome, r.reason) for r in reports] == [("reauth_required", "refresh_token_revoked")]
    assert github_sim.counters.endpoint("GET /user") == 1
    assert runtime.vault.accounts.get(account.id).status == "reauth_required"
    assert "reauth_required" in kinds(runtime.vault, account.id)


async def test_a_deactivated_slack_account_is_reported_for_an_administrator(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.deactivate()

    reports = await health_monitor(runtime).run_due()

    assert [(r.outcome, r.reason) for r in reports] == [("admin_action_required", "account_inactive")]
    assert runtime.vault.accounts.get(account.id).status == "admin_action_required"


async def test_a_healthy_account_is_checked_once_per_interval_across_two_workers(runtime, settings, slack_sim):
    for user in ("ann", "bob", "cat", "dan", "eve", "fay"):
        seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user=user)
    other_worker = Runtime.open(settings)
    try:
        results: list = []

        async def run(worker: Runtime) -> None:
            results.extend(await health_monitor(worker).run_due())

        async with anyio.create_task_group() as group:
            group.start_soon(run, runtime)
            group.start_soon(run, other_worker)
        again = await health_monitor(other_worker).run_due()
    finally:
        await other_worker.aclose()

    assert sorted(r.account.split("/")[1] for r in results) == ["ann", "bob", "cat", "dan", "eve", "fay"]
    assert all(r.healthy for r in results) and again == []
    assert slack_sim.counters.endpoint("auth.test") == 6
    next_due = {a.health_due_at for a in runtime.vault.accounts.all()}
    assert all(due > utcnow() + timedelta(seconds=settings.health_check_interval_seconds - 60) for due in next_due)


async def test_startup_validation_checks_stale_accounts_and_names_those_needing_reauthorization(runtime, settings, slack_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="alice")
    bob_tokens = slack_sim.issue_grant()
    seed_account(settings, runtime.vault, "slack", bob_tokens, user="bob")
    with Session(runtime.vault.engine) as session:  # as if both were scheduled far ahead but never checked
        session.execute(update(ConnectedAccount).values(health_due_at=utcnow() + timedelta(days=1)))
        session.commit()
    slack_sim.revoke(token=bob_tokens.access_token)

    reports = await health_monitor(runtime).validate_at_startup()
    again = await health_monitor(runtime).validate_at_startup()  # a second worker starting just after

    assert sorted((r.account, r.outcome) for r in reports) == [("acme/alice/slack", "ok"), ("acme/bob/slack", "reauth_required")]
    assert again == []
    summary = runtime.vault.events.recent(kind="startup_validated")
    assert summary[-1].detail | {} == {
        **summary[-1].detail,
        "checked": 2,
        "ok": 1,
        "needs_reauthorization": ["acme/bob/slack"],
        "needs_admin": [],
    }
    assert summary[-1].severity == "warning"
    assert slack_sim.counters.endpoint("auth.test") == 2


async def test_require_healthy_names_every_account_that_needs_a_person(runtime, settings, slack_sim, github_sim):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="alice")
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), user="alice")
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(identity={"user_id": "U2"}), user="bob")
    github_sim.revoke()
    slack_sim.deactivate(token=None, grant_id=slack_sim.grants.grants()[1]["grant_id"])

    unhealthy = await health_monitor(runtime).require_healthy()

    assert sorted((u.account, u.status, u.reason) for u in unhealthy) == [
        ("acme/alice/github", "reauth_required", "refresh_token_revoked"),
        ("acme/bob/slack", "admin_action_required", "account_inactive"),
    ]
