"""Chaos soak (on SQLite and PostgreSQL, part of CI): two worker processes in fleet mode (each its refresh scheduler
beside lanes of tool calls), short-lived rotating tokens, and a provider that fails at random — token endpoint 503s
and hangs past the refresh deadline, slow (trickled) token answers, API 429s, connection resets and slow answers.
A bounded number of calls; afterwards no grant is lost and the simulator counted no reuse of a refresh token.

The token-endpoint faults are the ones a provider can survive: a failure before it processed the request, or a
processed request whose answer is slow but arrives within the deadline. (A rotation whose answer is lost is a lost
grant by definition: tests/lifecycle/test_crash_safety.py shows it is then reported as `refresh_interrupted`.)"""

from __future__ import annotations

import os

import anyio
import pytest

from server.connectors import load_connectors
from server.lifecycle.tokens import TokenManager
from server.monitoring.events import EventRecorder
from server.settings import Settings
from simulators.fleet import run_workers
from simulators.seeding import seed_account
from tests.support.cooldown import end_the_cooldown

USERS = ("alice", "bob", "carol", "dave")  # alice is the callers' account; the others only the schedulers refresh
ACCESS_TTL = 8  # refreshes due every ~6 s: several rotations per grant during the soak
CALLS_PER_WORKER = 80
STRUCTURED = {"ok", "upstream_error", "rate_limited"}


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in {
        "LEASE_SECONDS": "2",
        "LEASE_MAX_SECONDS": "12",
        # A slow (processed) answer takes slow_seconds; the deadline leaves room for a loaded machine, because a
        # processed answer cut by the deadline is a lost rotation, which this soak is not about.
        "REFRESH_TIMEOUT_SECONDS": "8",
        "MANDATORY_REFRESH_SECONDS": "1",
        "TOKEN_CACHE_SECONDS": "1",
        "SCHEDULER_POLL_SECONDS": "0.5",
        "HEALTH_CHECKS_ENABLED": "false",
        "RATE_LIMIT_MAX_WAIT_SECONDS": "2",
    }.items():
        monkeypatch.setenv(f"GRANTKEEPER_{name}", value)
    return Settings()


def test_two_workers_under_random_provider_faults_lose_no_grant_and_reuse_no_refresh_token(runtime_sync, settings, slack_sim):
    slack_sim.set_access_ttl(ACCESS_TTL)
    # Each grant comes due for its refresh as the soak starts.
    accounts = [
        seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), user=user, lifetime_used=0.74)
        for user in USERS
    ]
    # Some of each fault for certain (the first requests), then at random. (A failed refresh starts a cooldown in
    # which calls are answered `upstream_error` at once, so token-endpoint failures stay a small share.)
    slack_sim.token_endpoint_drip(count=1, seconds=3)  # longer than the lease, inside the deadline
    slack_sim.rate_limit(count=3, retry_after=1)
    slack_sim.reset_connections(count=3)
    slack_sim.chaos(
        seed=7,
        token_errors=0.03,
        token_hangs=0.02,
        token_slow=0.15,
        api_rate_limits=0.1,
        api_resets=0.05,
        api_slow=0.2,
        hang_seconds=9,  # past the refresh deadline
        slow_seconds=2.2,
        api_latency_seconds=0.3,
    )
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}

    outputs = run_workers(env, processes=2, calls=CALLS_PER_WORKER, lanes=4, mode="soak")

    slack_sim.chaos()  # the provider behaves again, for the checks below
    statuses = [status for output in outputs for status in output["statuses"]]
    counters = slack_sim.counters
    print(
        f"\nsoak: {len(statuses)} calls, {statuses.count('ok')} ok; {counters.token_requests} token requests, "
        f"{counters.refreshes_ok} rotations, {counters.server_errors} token/API 5xx, {counters.slow_answers} slow "
        f"answers, {counters.rate_limited} 429s, {counters.connection_resets} resets; "
        f"{counters.reuse_detections} reuse detections"
    )
    assert len(statuses) == 2 * CALLS_PER_WORKER and set(statuses) <= STRUCTURED, sorted(set(statuses))
    assert statuses.count("ok") >= CALLS_PER_WORKER // 2  # the soak did real work
    assert counters.reuse_detections == 0
    assert counters.slow_answers >= 1
    assert counters.rate_limited >= 3 and counters.connection_resets >= 3
    assert counters.refreshes_ok >= len(USERS)  # every grant rotated at least once
    for account in accounts:  # no grant lost: each is active, and its stored refresh token is the live one
        assert runtime_sync.vault.accounts.get(account.id).status == "active"
        assert runtime_sync.vault.credentials.read(account.id).lease_owner is None
    assert all(grant["state"] == "active" for grant in slack_sim.grants.grants())
    rotations = counters.refreshes_ok
    anyio.run(refresh_each_once, settings, runtime_sync.vault, accounts)
    assert counters.refreshes_ok == rotations + len(USERS) and counters.reuse_detections == 0


async def refresh_each_once(settings: Settings, vault, accounts) -> None:
    tokens = TokenManager(settings, vault, load_connectors(settings), EventRecorder(vault))
    try:
        for account in accounts:
            end_the_cooldown(vault, account.id)  # a refresh that failed last waits for its retry time otherwise
            row = vault.credentials.read(account.id)
            assert (await tokens.refresh(account, row.version, trigger="check")).version == row.version + 1
    finally:
        await tokens.aclose()
