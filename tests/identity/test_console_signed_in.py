"""The operator's console for signed-in people, in a real headless Chromium signing in through the OIDC
simulator: an administrator (by group) sees a revoked account as needing action and creates a reconnect link; its
owner, signed in as himself, completes it and the next load shows it healthy; remove ends the grant upstream and
the account's tools answer `removed`; a signed-in non-administrator gets 403 (and his own accounts at /accounts);
a signed-out browser is sent to sign in; a POST without the form token changes nothing. No token, link token or
session id appears in the pages, the audit rows, the events or the CLI's output."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from server.console.actions import AccountActions
from server.execute import Caller
from simulators.seeding import seed_account
from tests.identity.test_browser_links import outcome, sign_in
from tests.support.web import vault_rows

pytestmark = [pytest.mark.anyio, pytest.mark.browser]
BOB_SLACK = {"team_id": "T0SIMTEAM", "team_name": "Simulated Workspace", "user_id": "U0BOB"}


@pytest.fixture
def env(env, monkeypatch):
    """Alice is in the simulator's `grantkeeper-admins` group: an administrator. Bob is not."""
    monkeypatch.setenv("GRANTKEEPER_ADMIN_GROUP", "grantkeeper-admins")
    return {**env, "GRANTKEEPER_ADMIN_GROUP": "grantkeeper-admins"}


async def never_called(api):
    raise AssertionError("a removed account's operation ran")


async def test_signed_in_console_lifecycle(runtime, settings, slack_sim, web, chromium, capsys):
    from server.cli import main
    from tests.support.logs import logging_restored

    first = slack_sim.issue_grant(BOB_SLACK)
    account = seed_account(settings, runtime.vault, "slack", first, user="bob", provider_account_id="T0SIMTEAM:U0BOB")
    slack_sim.revoke()
    await AccountActions(runtime).check_now(account, actor="test")
    pages: list[str] = []

    signed_out = await (await chromium.new_context()).new_page()
    await signed_out.goto(f"{web}/dashboard")
    assert await signed_out.query_selector("#person-alice") is not None  # sent to sign in at the identity provider

    admin_context = await chromium.new_context()
    admin = await admin_context.new_page()
    await sign_in(admin, web, "alice")
    await admin.goto(f"{web}/dashboard")
    pages.append(await admin.content())
    assert await admin.get_attribute(f"#account-{account.id}", "data-needs-action") == "yes"
    await admin.click(f"#account-{account.id} button[data-action=link]")
    link = (await admin.inner_text("#fresh-link")).strip()

    bob_context = await chromium.new_context()
    bob = await bob_context.new_page()
    await bob.goto(link)  # signed out: signs in as Bob first, then the link page
    async with bob.expect_navigation(url="**/connect/*"):
        await bob.click("#person-bob")
    async with bob.expect_navigation(url="**/authorize?**"):
        await bob.click("#continue")
    for field, value in BOB_SLACK.items():
        if await bob.query_selector(f"#{field}") is not None:
            await bob.fill(f"#{field}", value)
    async with bob.expect_navigation(url="**/oauth/callback?**"):
        await bob.click("#allow")
    assert await outcome(bob) == "reconnected"

    await admin.goto(f"{web}/dashboard")
    pages.append(await admin.content())
    assert await admin.get_attribute(f"#account-{account.id}", "data-status") == "active"
    assert await admin.get_attribute(f"#account-{account.id}", "data-needs-action") == "no"
    reconnected = runtime.vault.credentials.read(account.id)
    await runtime.tokens.refresh(account, reconnected.version, trigger="manual")
    refreshed = runtime.vault.credentials.read(account.id)

    before = vault_rows(runtime)
    refused = await admin.request.post(f"{web}/dashboard/accounts/{account.id}/remove", form={"do": "remove"})
    assert refused.status == 403 and vault_rows(runtime) == before

    await admin.click(f"#account-{account.id} button[data-action=remove]")
    pages.append(await admin.content())
    assert slack_sim.counters.revocations == 1
    result = await runtime.executor.run(Caller("acme", "bob"), "slack", never_called)
    assert (result.status, result.reason) == ("reauth_required", "removed")
    assert runtime.vault.accounts.get(account.id).removed_by == "session:acme/alice"

    response = await bob.goto(f"{web}/dashboard")
    assert response.status == 403
    await bob.goto(f"{web}/accounts")
    pages.append(await bob.content())
    assert await bob.get_attribute(f"#account-{account.id}", "data-status") == "reauth_required"

    with logging_restored():
        assert main(["status", "--json"]) == 0
        assert main(["events", "--limit", "1000"]) == 0
        assert main(["audit", "--json", "--limit", "1000"]) == 0
    printed = capsys.readouterr()
    cookies = [c["value"] for context in (admin_context, bob_context) for c in await context.cookies()]
    assert any(c["name"].endswith("gk_session") for c in await admin_context.cookies())
    secrets = [
        first.access_token,
        first.refresh_token,
        reconnected.access_token,
        reconnected.refresh_token,
        refreshed.access_token,
        refreshed.refresh_token,
        settings.provider("slack").client_secret,
        urlsplit(link).path.rsplit("/", 1)[1],
        *cookies,
    ]
    haystack = "\n".join(
        [
            *pages,
            printed.out,
            printed.err,
            json.dumps([r.model_dump(mode="json") for r in runtime.audit.rows(limit=1000)]),
            json.dumps([e.model_dump(mode="json") for e in runtime.vault.events.recent(limit=1000)]),
        ]
    )
    assert [s for s in secrets if s and s in haystack] == []
