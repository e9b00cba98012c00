"""A grant the vault knows is dead stays dead with its first reason (on SQLite and PostgreSQL): no worker, retry or
scheduler presents its refresh token again (counted at the token endpoint), and nothing rewrites the reason."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from sqlalchemy import update
from sqlmodel import Session

from server.background import refresh_scheduler
from server.connectors import load_connectors
from server.failures import GrantGoneError
from server.lifecycle.tokens import TokenManager
from server.monitoring.events import EventRecorder
from server.vault import AccountStatus
from server.vault.models import Credential, utcnow
from simulators.seeding import seed_account
from tests.support.cooldown import end_the_cooldown
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}


def another_worker(runtime) -> TokenManager:
    """A second TokenManager on the same vault: what another worker process runs (its own lease owner id)."""
    return TokenManager(runtime.settings, runtime.vault, load_connectors(runtime.settings), EventRecorder(runtime.vault))


async def interrupted_grant(runtime, settings, slack_sim):
    """A grant correctly declared dead as `refresh_interrupted`: the provider rotated, the answer was lost (a 502
    after processing), and the next attempt found the refresh token spent."""
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_fail(count=1, status=502, after_processing=True)
    async with mcp_client(runtime) as client:
        failed = await call(client, "slack_read_channel", READ)  # rotated, answer lost: ambiguous, a cooldown
        end_the_cooldown(runtime.vault, account.id)
        result = await call(client, "slack_read_channel", READ)  # presents it again to find out
    assert failed["reason"] == "token_endpoint_unavailable"
    assert (result["status"], result["reason"]) == ("reauth_required", "refresh_interrupted")
    return account


async def test_a_dead_grants_refresh_token_is_never_presented_again_and_its_reason_stays(runtime, settings, slack_sim):
    account = await interrupted_grant(runtime, settings, slack_sim)
    hits = slack_sim.counters.token_requests
    assert hits == 2

    # An in-flight retry in this worker, holding the version it saw before the grant died.
    with pytest.raises(GrantGoneError) as retry:
        await runtime.tokens.refresh(account, 1, trigger="retry")
    # Another worker that never saw the grant die.
    other = another_worker(runtime)
    with pytest.raises(GrantGoneError) as elsewhere:
        await other.refresh(account, 1, trigger="expiry")
    await other.aclose()
    # The provider's API says the token was revoked: the status is not rewritten by that either.
    assert runtime.vault.accounts.set_status(account.id, AccountStatus.REAUTH_REQUIRED, "token_revoked") is False
    # The scheduler: nothing to claim (even when a due time is forced back onto the row).
    with Session(runtime.vault.engine) as session:
        session.execute(update(Credential).where(Credential.account_id == account.id).values(refresh_due_at=utcnow()))
        session.commit()
    stats = await refresh_scheduler(runtime).run_until_idle()
    # A tool call.
    async with mcp_client(runtime) as client:
        result = await call(client, "slack_read_channel", READ)

    assert retry.value.reason == elsewhere.value.reason == result["reason"] == "refresh_interrupted"
    assert stats.claimed == 0
    assert slack_sim.counters.token_requests == hits  # the dead refresh token was never sent again
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_interrupted")
    assert [e.detail["reason"] for e in runtime.vault.events.recent(account.id, kind="reauth_required")] == [
        "refresh_interrupted"
    ]


async def test_a_waiting_worker_sees_the_grant_die_and_does_not_present_its_token(runtime, settings, slack_sim):
    """Two workers want the same expired grant; the first one's refresh token is refused (the user revoked the app)
    while the second waits on its lease. The second takes the first's verdict instead of asking the provider."""
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens, expired=True)
    slack_sim.revoke(token=tokens.refresh_token)
    slack_sim.token_endpoint_drip(count=1, seconds=1.0)  # the refusal takes a second to arrive: the other waits
    other = another_worker(runtime)
    reasons: list[str] = []

    async def refresh_in(manager: TokenManager) -> None:
        try:
            await manager.refresh(account, 1, trigger="expiry")
        except GrantGoneError as gone:
            reasons.append(gone.reason)

    async with anyio.create_task_group() as group:
        group.start_soon(refresh_in, runtime.tokens)
        assert await anyio.to_thread.run_sync(slack_sim.counters.wait_for, "slow_answers", 1, 30)
        group.start_soon(refresh_in, other)  # the first holds the lease; its refusal is trickling in
    await other.aclose()

    assert reasons == ["refresh_token_revoked"] * 2
    assert slack_sim.counters.token_requests == 1
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_token_revoked")


def test_a_dead_grant_is_marked_only_by_the_lease_holder_and_keeps_its_first_reason(runtime_sync, settings, slack_sim):
    vault = runtime_sync.vault
    account = seed_account(settings, vault, "slack", slack_sim.issue_grant(), expired=True)
    assert vault.credentials.try_lease(account.id, 1, "worker-a", timedelta(seconds=5))

    assert (
        vault.credentials.mark_grant_dead(account.id, "worker-b", 1, AccountStatus.REAUTH_REQUIRED, "refresh_token_revoked")
        is False
    )  # not the lease holder: nothing changes
    assert vault.accounts.get(account.id).status == "active"
    assert vault.credentials.mark_grant_dead(account.id, "worker-a", 1, AccountStatus.REAUTH_REQUIRED, "refresh_interrupted")
    assert vault.credentials.try_lease(account.id, 1, "worker-b", timedelta(seconds=5)) is False  # a dead row is never leased
    assert vault.accounts.set_status(account.id, AccountStatus.REAUTH_REQUIRED, "token_rejected") is False

    stored = vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_interrupted")
