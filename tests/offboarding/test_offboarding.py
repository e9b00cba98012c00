"""Removing an account ends its grant at the provider (each simulator counts the grants ended), wipes its
credentials at once, tells agents `reauth_required` / `removed`, and records who removed it. A provider that
cannot be reached is retried from the database; reconnecting ends the grant it replaces; a connect refused for
the wrong provider account ends the tokens it brought."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from server.execute import Caller
from server.vault.models import Credential, Revocation
from server.vault.revocations import Revocations
from simulators.seeding import seed_account
from tests.support.custom import ACME_CLIENT, acme_declaration, opened_runtime, write_config

pytestmark = pytest.mark.anyio

IDENTITIES = {
    "slack": ({"team_id": "T0SIMTEAM", "team_name": "Simulated Workspace", "user_id": "U0ALICE"}, "T0SIMTEAM:U0ALICE"),
    "github": ({"login": "alice", "id": 3}, "3"),
    "google": ({"email": "alice@example.com", "name": "Alice"}, "alice@example.com"),
    "zendesk": ({"user_id": 3, "name": "Alice", "email": "alice@acme.example"}, "3"),
}


async def never_called(api):  # the account must be refused before any provider call
    raise AssertionError("the removed account's operation ran")


def sims(slack_sim, github_sim, google_sim, zendesk_sim):
    return {"slack": slack_sim, "github": github_sim, "google": google_sim, "zendesk": zendesk_sim}


def credentials(runtime) -> list[Credential]:
    with Session(runtime.vault.engine) as session:
        return list(session.exec(select(Credential)))


def revocation_rows(runtime) -> list[Revocation]:
    with Session(runtime.vault.engine) as session:
        return list(session.exec(select(Revocation)))


@pytest.mark.parametrize("connector", IDENTITIES)
async def test_remove_ends_the_grant_at_the_provider(
    runtime, settings, slack_sim, github_sim, google_sim, zendesk_sim, connector
):
    sim = sims(slack_sim, github_sim, google_sim, zendesk_sim)[connector]
    identity, provider_account_id = IDENTITIES[connector]
    tokens = sim.issue_grant(identity)
    account = seed_account(settings, runtime.vault, connector, tokens, provider_account_id=provider_account_id)

    removed = await runtime.offboarding.remove(account, actor="admin:ops@acme")
    result = await runtime.executor.run(Caller("acme", "alice"), connector, never_called)

    assert removed.revocation == "done"
    assert sim.counters.revocations == 1
    assert not sim.grants.check_access_token(tokens.access_token).ok  # the provider no longer honours it
    assert credentials(runtime) == []  # wiped at once
    assert (result.status, result.reason) == ("reauth_required", "removed")
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason, stored.removed_by) == ("reauth_required", "removed", "admin:ops@acme")
    [row] = revocation_rows(runtime)
    assert (row.state, row.ciphertext, row.key_id) == ("done", None, None)  # the sealed token went with it
    kinds = [event.kind for event in runtime.vault.events.recent(account.id)]
    assert {"account_removed", "upstream_revocation_completed"} <= set(kinds)


async def test_an_unreachable_provider_is_retried_from_the_database(runtime, settings, github_sim):
    tokens = github_sim.issue_grant(IDENTITIES["github"][0])
    account = seed_account(settings, runtime.vault, "github", tokens, provider_account_id="3")
    github_sim.fail(count=1, status=503)

    removed = await runtime.offboarding.remove(account, actor="admin:ops@acme")
    result = await runtime.executor.run(Caller("acme", "alice"), "github", never_called)

    assert removed.revocation == "pending"
    assert (result.status, result.reason) == ("reauth_required", "removed")  # gone for agents regardless
    assert credentials(runtime) == [] and github_sim.counters.revocations == 0
    [row] = revocation_rows(runtime)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "http_503")
    assert row.ciphertext is not None  # sealed until the provider accepts

    # Not yet due: nothing is tried. Due (a clock past the retry time): the background pass ends it.
    assert await runtime.offboarding.retry_due() == 0
    runtime.offboarding.clock = lambda: row.next_attempt_at
    assert await runtime.offboarding.retry_due() == 1
    assert github_sim.counters.revocations == 1
    [row] = revocation_rows(runtime)
    assert (row.state, row.attempts, row.ciphertext) == ("done", 2, None)
    assert Revocations(runtime.vault).latest_by_account()[account.id].state == "done"


async def test_removing_twice_calls_the_provider_once(runtime, settings, slack_sim):
    account = seed_account(
        settings, runtime.vault, "slack", slack_sim.issue_grant(IDENTITIES["slack"][0]), provider_account_id="T0SIMTEAM:U0ALICE"
    )
    first = await runtime.offboarding.remove(account, actor="admin:a")
    second = await runtime.offboarding.remove(account, actor="admin:b")
    assert (first.revocation, second.revocation) == ("done", "nothing")
    assert slack_sim.counters.revocations == 1
    assert len(revocation_rows(runtime)) == 1


async def test_a_declared_providers_grant_ends_at_its_rfc7009_endpoint(env, oauth2_server, isolated_environment, monkeypatch):
    from simulators import OAuth2Simulator

    sim = oauth2_server.app = OAuth2Simulator()
    write_config(isolated_environment, acme_declaration(oauth2_server.url, extra='revoke_path = "/oauth/revoke"'))
    for key, value in ACME_CLIENT.items():
        monkeypatch.setenv(key, value)
    async with opened_runtime() as runtime:
        tokens = sim.issue_grant({"sub": "alice"})
        account = seed_account(runtime.settings, runtime.vault, "acme", tokens, provider_account_id="alice")
        removed = await runtime.offboarding.remove(account, actor="admin:ops")
        assert removed.revocation == "done"
        assert sim.counters.revocations == 1
        assert sim.counters.endpoint("revoke") == 1


async def test_removal_is_reported_as_an_account_removed_webhook(runtime, settings, slack_sim):
    runtime.vault.outbox.add_endpoint("https://hooks.example/grantkeeper", ["account.removed"])
    tokens = slack_sim.issue_grant(IDENTITIES["slack"][0])
    account = seed_account(settings, runtime.vault, "slack", tokens, provider_account_id="T0SIMTEAM:U0ALICE")

    await runtime.offboarding.remove(account, actor="admin:ops@acme")

    [message] = runtime.vault.outbox.messages()
    assert message.event_type == "account.removed"
    assert message.payload["data"]["account"]["id"] == account.id
    dumped = str(message.payload)
    assert tokens.access_token not in dumped and tokens.refresh_token not in dumped


async def test_a_removed_account_keeps_saying_removed(runtime, settings, slack_sim):
    """Another worker still holding the old token sees it refused meanwhile: that must not turn `removed` into
    `token_rejected`, nor may enabling bring a removed account back (only its owner's reconnect does)."""
    from server.vault import AccountStatus

    account = seed_account(
        settings, runtime.vault, "slack", slack_sim.issue_grant(IDENTITIES["slack"][0]), provider_account_id="T0SIMTEAM:U0ALICE"
    )
    await runtime.offboarding.remove(account, actor="admin:ops")

    assert not runtime.vault.accounts.set_status(account.id, AccountStatus.REAUTH_REQUIRED, "token_rejected")
    assert not runtime.vault.accounts.set_status(account.id, AccountStatus.ACTIVE, None)
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "removed")
