"""Several OS processes sharing one vault refresh a rotating grant exactly once (on SQLite and PostgreSQL)."""

from __future__ import annotations

import os

from simulators.fleet import run_workers
from simulators.seeding import seed_account


def test_four_processes_times_fifty_calls_on_an_expired_rotating_token_make_one_token_request(runtime_sync, settings, slack_sim):
    seed_account(settings, runtime_sync.vault, "slack", slack_sim.issue_grant(), expired=True)
    assert slack_sim.grants.reuse_detection  # a second use of the old refresh token would revoke the grant
    env = {k: v for k, v in os.environ.items() if k.startswith("GRANTKEEPER_")}

    outputs = run_workers(env, processes=4, calls=50)

    statuses = [status for output in outputs for status in output["statuses"]]
    assert statuses == ["ok"] * 200
    assert slack_sim.counters.token_requests == 1
    assert slack_sim.counters.reuse_detections == 0
    assert slack_sim.counters.refresh_failures == 0
