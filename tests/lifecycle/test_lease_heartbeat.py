"""The refresh lease is a heartbeat, across OS processes (on SQLite and PostgreSQL): a live owner whose token
answer trickles in slowly is never overtaken, and a killed owner's lease frees within `lease_seconds`.

The token endpoint processes the refresh (rotating the refresh token) and then trickles its answer one byte at a
time: every read gets a byte long before any per-read timeout, so only the heartbeat keeps a second worker from
presenting the same, already spent, refresh token (which the simulator's reuse detection punishes by revoking the
whole grant — counted there)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from server.settings import Settings
from server.vault.models import utcnow
from simulators.fleet import let_go, output_of, run_workers, start_worker
from simulators.seeding import seed_account

LEASE_SECONDS = 2.0  # renewed every 2/3 s; the trickle lasts three leases
TRICKLE_SECONDS = 6.0
STRUCTURED = {"ok", "reauth_required", "upstream_error", "rate_limited", "admin_action_required", "invalid_input"}


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("GRANTKEEPER_LEASE_SECONDS", str(LEASE_SECONDS))
    monkeypatch.setenv("GRANTKEEPER_LEASE_MAX_SECONDS", "30")
    monkeypatch.setenv("GRANTKEEPER_REFRESH_TIMEOUT_SECONDS", "20")  # the trickle ends well inside the deadline
    return Settings()


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}


def test_a_slow_trickling_answer_keeps_its_lease_so_the_other_process_never_presents_the_spent_token(
    runtime_sync, settings, slack_sim
):
    account = seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_drip(count=1, seconds=TRICKLE_SECONDS)

    outputs = run_workers(worker_env(), processes=2, calls=5)

    statuses = [status for output in outputs for status in output["statuses"]]
    assert statuses == ["ok"] * 10
    assert slack_sim.counters.slow_answers == 1  # the one refresh really was trickled
    assert slack_sim.counters.token_requests == 1
    assert slack_sim.counters.reuse_detections == 0
    stored = runtime_sync.vault.accounts.get(account.id)
    row = runtime_sync.vault.credentials.read(account.id)
    assert (stored.status, row.version, row.lease_owner, row.last_refresh_outcome) == ("active", 2, None, "ok")


def test_a_killed_owner_frees_the_grant_within_the_lease_and_the_survivor_says_refresh_interrupted(
    runtime_sync, settings, slack_sim
):
    account = seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_drip(count=1, seconds=600)  # rotated, and its answer will never arrive in time
    owner = start_worker(worker_env(), calls=1)
    survivor = start_worker(worker_env(), calls=3)
    try:
        let_go(owner)
        # The owner holds the lease and its token request is in flight: the provider rotated and is trickling.
        assert slack_sim.counters.wait_for("slow_answers", 1, timeout=60)
        let_go(survivor)  # its calls find the owner's live lease and wait for it
        os.kill(owner.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        owner.wait(timeout=30)
        # What the dead owner left behind: a lease that runs out at most `lease_seconds` from now (a fact of the
        # row, not a race), where the old fixed lease blocked the grant for the whole cap.
        left_behind = runtime_sync.vault.credentials.read(account.id)
        lease_left = 0.0 if left_behind.lease_until is None else (left_behind.lease_until - utcnow()).total_seconds()
        assert slack_sim.counters.wait_for("token_requests", 2, timeout=60)  # the survivor presents the token
        measured = time.monotonic() - killed_at
        survivor_saw = output_of(survivor)
    finally:
        for worker in (owner, survivor):
            if worker.poll() is None:
                worker.kill()

    heartbeat = settings.lease_seconds / 3
    print(
        f"\nsurvivor presented the refresh token {measured:.2f} s after the owner was killed "
        f"(lease {settings.lease_seconds:g} s, renewed every {heartbeat:g} s; cap {settings.lease_max_seconds:g} s)"
    )
    # A lease renewed just before the kill runs out `lease_seconds` after that renewal, and the survivor looks
    # again the moment it does (the figure printed above); the assertion is on the row, so load cannot flake it.
    assert lease_left <= settings.lease_seconds
    # The killed request had rotated: the old refresh token is spent, and the grant says so.
    assert survivor_saw["statuses"] == ["reauth_required"] * 3
    stored = runtime_sync.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_interrupted")
    assert slack_sim.counters.token_requests == 2  # the dead token was presented once, to find out, never again
