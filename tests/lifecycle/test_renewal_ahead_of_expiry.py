"""A refresh token with a fixed end, renewed ahead of it: the health checks announce it once (event and webhook,
never a link), `grantkeeper check` prints one renewal link however often it runs, and opening it puts new
credentials on the same account — with no link token in any event, webhook body, audit row or log line."""

from __future__ import annotations

import json

import anyio
import pytest

from server.background import health_monitor
from server.lifecycle import renewal
from simulators.person import link_user
from simulators.seeding import seed_account
from tests.server.test_cli import grantkeeper
from tests.support import renewal_world
from tests.support.web import outcome_of, vault_rows, web_server

pytestmark = pytest.mark.anyio
REFRESH_LIFETIME = renewal_world.REFRESH_LIFETIME
GITHUB_ALICE = renewal_world.GITHUB_ALICE
github_sim = renewal_world.github_sim_with_ending_refresh_tokens


async def check(env: dict[str, str]) -> tuple[str, str]:
    """`grantkeeper check` as the operator runs it: the account's line, and everything it wrote to stderr."""
    done = await anyio.to_thread.run_sync(lambda: grantkeeper(env, "check"))
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("acme/alice/github ")]
    return line, done.stderr


async def test_one_renewal_link_per_account_renews_it_ahead_of_time_and_no_link_reaches_an_event_or_webhook(
    runtime, env, settings, github_sim
):
    runtime.vault.outbox.add_endpoint("https://hooks.example.com/grantkeeper", ["account.reauth_required"])
    # Issued six minutes ago: four of its ten minutes are left, inside the last half of its life.
    account = seed_account(
        settings, runtime.vault, "github", github_sim.issue_grant(), lifetime_used=0.1, provider_account_id=GITHUB_ALICE
    )
    ends_at = runtime.vault.credentials.timings(account.id)["refresh_expires_at"]
    monitor = health_monitor(runtime)

    for _ in range(3):  # three scheduled passes
        assert (await monitor.check(account, trigger="scheduled")).healthy
    links_after_passes = len(vault_rows(runtime)["magic_link"])

    async with web_server(runtime) as url:
        operator = {**env, "GRANTKEEPER_PUBLIC_URL": url}
        first, first_log = await check(operator)
        again, again_log = await check(operator)
        link = first.rsplit(" ", 1)[1]
        async with link_user() as owner:
            page = await owner.reconnect(link)
        renewed, _ = await check(operator)

    rows = vault_rows(runtime)
    [event] = runtime.vault.events.recent(account_id=account.id, kind="refresh_token_expiring")
    announced = [m for m in runtime.vault.outbox.messages() if m.event_type == "account.reauth_required"]
    after = runtime.vault.accounts.find("acme", "alice", "github")
    credential = runtime.vault.credentials.read(account.id)

    # Announced once, naming how to renew; the passes issued no link.
    assert links_after_passes == 0
    assert event.detail["refresh_expires_at"] == ends_at.isoformat()
    assert "grantkeeper check --org acme --user alice" in event.detail["next_step"]
    [message] = announced
    assert message.payload["data"]["reason"] == "refresh_token_expiring"
    assert message.payload["data"]["next_step"] == event.detail["next_step"]

    # The operator's check printed one link; the second check issued none and said the first is still open.
    assert "its refresh token ends" in first and link.startswith(f"{url}/connect/")
    assert "renewal link issued" in again and "/connect/" not in again
    [row] = rows["magic_link"]
    assert (row["account_id"], row["purpose"], row["reason"]) == (account.id, "reauth", "refresh_token_expiring")
    assert row["completed_at"] is not None

    # Opening it renewed the same account: new credentials, a fresh refresh token, nothing left to announce.
    assert outcome_of(page) == "reconnected"
    assert (after.id, after.status, after.provider_account_id) == (account.id, "active", GITHUB_ALICE)
    assert len(rows["connected_account"]) == 1
    assert credential.version == 2
    assert runtime.vault.credentials.timings(account.id)["refresh_expires_at"] > ends_at
    assert renewed.split()[1] == "ok" and "refresh token ends" not in renewed

    # The link id is recorded; the link itself nowhere but the operator's terminal.
    [created] = runtime.audit.rows(action="link_created")
    assert (created.account_id, created.detail["link_id"]) == (account.id, row["id"])
    token = link.rsplit("/", 1)[1]
    recorded = json.dumps(
        [rows["lifecycle_event"], rows["audit_event"], [m.payload for m in runtime.vault.outbox.messages()]], default=str
    )
    for text in (recorded, first_log, again_log):
        assert token not in text and "/connect/" not in text


async def test_callers_asking_at_the_same_moment_get_one_renewal_link_between_them(runtime, settings, github_sim):
    account = seed_account(
        settings, runtime.vault, "github", github_sim.issue_grant(), lifetime_used=0.1, provider_account_id=GITHUB_ALICE
    )
    askers = 8  # each in a worker thread of its own, as `check` and agents listing their accounts would be
    renewals: list[renewal.Renewal] = []

    async def ask() -> None:
        renewals.append(await renewal.renewal_link(runtime.executor, runtime.vault, account, issued_by="agent"))

    async with anyio.create_task_group() as group:
        for _ in range(askers):
            group.start_soon(ask)

    links = [row for row in vault_rows(runtime)["magic_link"] if row["account_id"] == account.id]
    issued = [r.issued for r in renewals if r.issued is not None]
    assert len(links) == len(issued) == 1
    assert sorted(r.open.id for r in renewals if r.open is not None) == [issued[0].link_id] * (askers - 1)
