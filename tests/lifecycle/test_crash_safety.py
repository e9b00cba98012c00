"""`kill -9` of a worker at each step of a refresh: afterwards the grant is either fresh and working, or
`reauth_required` with reason `refresh_interrupted` — never a silent failure, never a half-written credential,
never a token in the clear.

The worker kills itself at the step through the GRANTKEEPER_TEST_CRASH_AT hook (server/lifecycle/crashpoints.py).
"""

from __future__ import annotations

import os

import anyio
import pytest
from sqlalchemy import update
from sqlmodel import Session

from server.background import refresh_scheduler
from server.lifecycle.crashpoints import CRASH_AT_ENV, STEPS
from server.settings import Settings
from server.vault.models import Credential, utcnow
from simulators.fleet import run_until_it_dies
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client
from tests.support.stored import assert_no_plaintext, database_contents

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}
# What a survivor finds, by the step the worker died at.
OUTCOME = {
    "before_provider_call": "fresh",  # the refresh token was never presented: the survivor refreshes with it
    "after_provider_rotated": "refresh_interrupted",  # spent, and its successor died with the worker
    "after_commit": "fresh",  # the new tokens were stored: nothing left to do
}


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    # A one-second lease, so a survivor may take over a dead worker's lease a second after it was taken
    # (a tool call waits for that by itself); the refresh timeout stays shorter than the lease.
    monkeypatch.setenv("GRANTKEEPER_LEASE_SECONDS", "1")
    monkeypatch.setenv("GRANTKEEPER_REFRESH_TIMEOUT_SECONDS", "0.8")
    return Settings()


def let_the_lease_run_out(vault, account_id: str) -> None:
    """Instead of sleeping for the lease to expire, move its end into the past."""
    with Session(vault.engine) as session:
        session.execute(
            update(Credential).where(Credential.account_id == account_id).values(lease_until=utcnow().replace(year=2000))
        )
        session.commit()


def every_token_the_provider_issued(sim) -> list[str]:
    return list(sim.grants._access) + list(sim.grants._refresh)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("dies_in", ["tool_call", "scheduler"])
async def test_worker_killed_mid_refresh_leaves_a_fresh_grant_or_a_reauth_request(runtime, settings, slack_sim, step, dies_in):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")} | {CRASH_AT_ENV: step}

    ended = await anyio.to_thread.run_sync(run_until_it_dies, env, "calls" if dies_in == "tool_call" else "scheduler")

    assert ended.killed, ended.stderr[-3000:]
    left = runtime.vault.credentials.read(account.id)  # opens: the row is whole, never half-written
    if step == "after_commit":
        assert (left.version, left.lease_owner) == (2, None)
    else:
        assert left.version == 1 and left.lease_owner is not None  # an abandoned lease, nothing else changed

    # A survivor: the scheduler (once the lease has run out) or a tool call (which waits for the lease itself).
    if dies_in == "scheduler":
        let_the_lease_run_out(runtime.vault, account.id)
        await refresh_scheduler(runtime).run_until_idle()
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)

    stored = runtime.vault.accounts.get(account.id)
    row = runtime.vault.credentials.read(account.id)
    assert row.lease_owner is None
    if OUTCOME[step] == "fresh":
        assert result["status"] == "ok"
        assert stored.status == "active"
        assert row.version == 2 and row.access_expires_at > utcnow()
        assert slack_sim.counters.refreshes_ok == 1
    else:
        assert (result["status"], result["reason"]) == ("reauth_required", "refresh_interrupted")
        assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_interrupted")
        assert row.version == 1 and row.refresh_due_at is None
        events = runtime.vault.events.recent(account.id, kind="reauth_required")
        assert events and events[0].detail["reason"] == "refresh_interrupted"
    secrets = every_token_the_provider_issued(slack_sim)
    assert_no_plaintext(database_contents(settings, runtime.vault.engine), secrets)
    assert not any(secret in ended.stderr for secret in secrets)


async def test_a_refresh_answered_with_a_5xx_after_rotating_is_reported_as_interrupted(runtime, settings, slack_sim):
    """The provider rotated but answered 502 (a gateway after processing): the old refresh token is spent, so the
    next attempt says `refresh_interrupted` instead of claiming the user revoked access."""
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), lifetime_used=0.8)
    slack_sim.token_endpoint_fail(count=1, status=502, after_processing=True)

    first = await refresh_scheduler(runtime).run_until_idle()
    assert first.failed == 1
    row = runtime.vault.credentials.read(account.id)
    assert row.last_refresh_outcome == "ambiguous" and row.version == 1
    with Session(runtime.vault.engine) as session:  # the retry time arrives
        session.execute(update(Credential).where(Credential.account_id == account.id).values(refresh_due_at=utcnow()))
        session.commit()
    second = await refresh_scheduler(runtime).run_until_idle()

    assert second.failed == 1
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_interrupted")
