"""The operator's console in a real headless Chromium: a revoked account shows as needing action, its reconnect
link (shown once to the administrator) completed by the account's owner brings it back to healthy on the next
load; remove ends the grant upstream (the simulator counts one revocation) and the account's tools answer
`reauth_required` / `removed`; a non-administrator gets 403; a POST without the form token changes nothing. And
after the whole lifecycle no secret appears in the pages, the audit rows, the events or the CLI's output.

Headless use goes through an admin API key sent as `Authorization: Bearer` on every request of the browser
context (the signed-in browser session is the other way in, where browser sign-in is configured)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from server.auth import create_api_key
from server.console.actions import AccountActions
from simulators.seeding import seed_account
from tests.reauth.conftest import SLACK_ALICE
from tests.reauth.test_browser_reauth import CHROMIUM, CHROMIUM_ARGS, click_through
from tests.support.web import call_structured, http_session, vault_rows

pytestmark = [pytest.mark.anyio, pytest.mark.browser]
READ = {"channel": "C0GENERAL", "limit": 1}

from playwright.async_api import Browser, Page, async_playwright  # noqa: E402 - skipped above when absent


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def row(page: Page, account_id: str) -> dict[str, str]:
    selector = f"#account-{account_id}"
    return {
        "status": await page.get_attribute(selector, "data-status"),
        "needs_action": await page.get_attribute(selector, "data-needs-action"),
        "next_action": await page.inner_text(f"{selector} .next-action"),
    }


async def test_dashboard_reconnect_remove_and_refusals(runtime, settings, slack_sim, web, browser, cli, capsys):
    first_grant = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", first_grant, provider_account_id=SLACK_ALICE)
    slack_sim.revoke()
    await AccountActions(runtime).check_now(account, actor="test")  # the health check finds the revocation
    admin_key = create_api_key(runtime.vault, org="acme", user="ops", admin=True).key
    alice_key = create_api_key(runtime.vault, org="acme", user="alice").key
    pages: list[str] = []

    admin = await browser.new_context(extra_http_headers={"Authorization": f"Bearer {admin_key}"})
    page = await admin.new_page()
    await page.goto(f"{web}/dashboard")
    pages.append(await page.content())
    before = await row(page, account.id)
    assert (before["status"], before["needs_action"]) == ("reauth_required", "yes")
    assert before["next_action"] == "reconnect — the user revoked access at Slack"

    # The reconnect link, shown once to the administrator who asked for it.
    await page.click(f"#account-{account.id} button[data-action=link]")
    link = (await page.inner_text("#fresh-link")).strip()
    assert urlsplit(link).path.startswith("/connect/")
    await page.goto(f"{web}/dashboard")
    pages.append(await page.content())
    assert link not in pages[-1]  # not on the next load

    owner = await browser.new_context()
    assert await click_through(await owner.new_page(), link) == "reconnected"
    await page.reload()
    pages.append(await page.content())
    healthy = await row(page, account.id)
    assert (healthy["status"], healthy["needs_action"], healthy["next_action"]) == ("active", "no", "nothing to do")
    reconnected = runtime.vault.credentials.read(account.id)
    await runtime.tokens.refresh(account, reconnected.version, trigger="manual")  # a refresh in the lifecycle too
    refreshed = runtime.vault.credentials.read(account.id)

    # A POST without the form token is refused and changes nothing.
    rows_before = vault_rows(runtime)
    refused = await page.request.post(f"{web}/dashboard/accounts/{account.id}/disable", form={"do": "disable"})
    assert refused.status == 403
    assert vault_rows(runtime) == rows_before

    # Remove: one upstream revocation, and the agent is told the account was removed.
    await page.click(f"#account-{account.id} button[data-action=remove]")
    pages.append(await page.content())
    assert slack_sim.counters.revocations == 1
    assert await page.get_attribute(f"#account-{account.id} .revocation", "data-revocation") == "done"
    async with http_session(web, alice_key) as agent:
        result = await call_structured(agent, "slack_read_channel", READ)
    assert (result["status"], result["reason"]) == ("reauth_required", "removed")
    assert runtime.vault.accounts.get(account.id).removed_by == f"key:{admin_key[:10]}…"

    # A non-administrator: 403 on the dashboard; their own accounts at /accounts.
    person = await browser.new_context(extra_http_headers={"Authorization": f"Bearer {alice_key}"})
    mine = await person.new_page()
    response = await mine.goto(f"{web}/dashboard")
    assert response.status == 403
    await mine.goto(f"{web}/accounts")
    pages.append(await mine.content())
    assert await mine.get_attribute(f"#account-{account.id}", "data-status") == "reauth_required"

    # No secret anywhere an operator looks.
    assert cli("status", "--json") == 0
    assert cli("events", "--limit", "1000") == 0
    assert cli("audit", "--json", "--limit", "1000") == 0
    cli_output = capsys.readouterr()
    audit = json.dumps([r.model_dump(mode="json") for r in runtime.audit.rows(limit=1000)])
    events = json.dumps([e.model_dump(mode="json") for e in runtime.vault.events.recent(limit=1000)])
    cookies = [c["value"] for context in (admin, owner, person) for c in await context.cookies()]
    secrets = {
        "first access token": first_grant.access_token,
        "first refresh token": first_grant.refresh_token,
        "reconnected access token": reconnected.access_token,
        "reconnected refresh token": reconnected.refresh_token,
        "refreshed access token": refreshed.access_token,
        "refreshed refresh token": refreshed.refresh_token,
        "client secret": settings.provider("slack").client_secret,
        "link token": urlsplit(link).path.rsplit("/", 1)[1],
        "admin key": admin_key,
        "user key": alice_key,
        **{f"cookie {i}": value for i, value in enumerate(cookies)},
    }
    haystacks = {
        "dashboard html": "\n".join(pages),
        "audit rows": audit,
        "events": events,
        "cli output": cli_output.out + cli_output.err,
    }
    leaks = [(what, where) for what, secret in secrets.items() if secret for where, text in haystacks.items() if secret in text]
    assert leaks == []
    assert len([c for c in cookies if c]) >= 2  # the search above did cover cookie values
    for context in (admin, owner, person):
        await context.close()
