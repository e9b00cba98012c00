"""Reconnecting ends the grant it replaces at the provider (and only that grant: the new one keeps working); a
connect refused because another provider account approved it ends the tokens that account brought."""

from __future__ import annotations

import pytest

from server.execute import Caller
from server.vault import AccountStatus
from simulators.seeding import seed_account
from tests.reauth.conftest import GITHUB_ALICE
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of, vault_rows

pytestmark = pytest.mark.anyio


async def test_reconnecting_ends_the_replaced_grant_and_keeps_the_new_one(runtime, settings, github_sim, web, user):
    old = github_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "github", old, provider_account_id=GITHUB_ALICE)
    _, link = await runtime.executor.connect_link(Caller("acme", "alice"), "github")

    page = await user.reconnect(link.url)

    assert outcome_of(page) == "reconnected"
    assert github_sim.counters.revocations == 1
    assert github_sim.counters.endpoint("DELETE /applications/{client_id}/token") == 1  # the token, not the grant
    assert not github_sim.grants.check_access_token(old.access_token).ok
    new = runtime.vault.credentials.read(account.id)
    assert github_sim.grants.check_access_token(new.access_token).ok
    async with mcp_client(runtime) as client:
        assert (await call(client, "github_search_issues", {"query": "bug"}))["status"] == "ok"
    [event] = runtime.vault.events.recent(account.id, kind="upstream_revocation_completed")
    assert event.detail["purpose"] == "replaced"


async def test_tokens_of_a_refused_connect_are_ended_not_just_dropped(runtime, settings, github_sim, web, user):
    account = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id=GITHUB_ALICE)
    github_sim.revoke()
    async with mcp_client(runtime) as client:
        link = (await call(client, "github_search_issues", {"query": "bug"}))["magic_link"]
    started = await user.start(link)
    callback = await user.consent(started.headers["location"], login="mallory", id="666")
    before = vault_rows(runtime)

    page = await user.client.get(callback)

    assert outcome_of(page) == "identity_mismatch"
    assert github_sim.counters.revocations == 1  # Mallory's fresh grant, ended at GitHub
    assert [g["state"] for g in github_sim.grants.grants() if g["identity"].get("login") == "mallory"] == ["revoked"]
    assert vault_rows(runtime) == before  # ended at once, so nothing was queued
    assert runtime.vault.accounts.get(account.id).provider_account_id == GITHUB_ALICE


async def test_a_connect_refused_for_a_disabled_account_ends_only_its_own_token(runtime, settings, github_sim, web, user):
    account = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id=GITHUB_ALICE)
    _, link = await runtime.executor.connect_link(Caller("acme", "alice"), "github")
    started = await user.start(link.url)
    callback = await user.consent(started.headers["location"])
    runtime.vault.accounts.set_status(account.id, AccountStatus.DISABLED, "disabled_by_operator")  # meanwhile, an operator

    page = await user.client.get(callback)

    assert outcome_of(page) == "account_disabled"
    # The same GitHub user may hold a live grant of this app: only the refused token is deleted, not the grant.
    assert github_sim.counters.endpoint("DELETE /applications/{client_id}/token") == 1
    assert github_sim.counters.endpoint("DELETE /applications/{client_id}/grant") == 0
    assert github_sim.counters.revocations == 1
