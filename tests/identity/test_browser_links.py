"""The phishing case in a real headless Chromium: Mallory's agent makes a link and sends it to Alice. Alice's
browser, signed in as Alice, refuses it (connect and reconnect alike) and the vault does not change by a byte;
Alice's own link, opened signed out, asks her to sign in and then connects her account."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from server.execute import Caller
from simulators.seeding import seed_account
from tests.support.web import vault_rows

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

if TYPE_CHECKING:
    from playwright.async_api import Page


async def outcome(page: Page) -> str | None:
    return await page.get_attribute("#outcome", "data-outcome")


async def sign_in(page: Page, web: str, person: str) -> None:
    await page.goto(f"{web}/login")
    async with page.expect_navigation(url="**/login"):
        await page.click(f"#person-{person}")
    assert await outcome(page) == "signed_in"


async def test_mallorys_links_are_refused_in_alices_browser_and_nothing_changes(runtime, settings, slack_sim, web, chromium):
    _, connect = await runtime.executor.connect_link(Caller("acme", "mallory"), "slack")
    github = seed_account(
        settings, runtime.vault, "slack", slack_sim.issue_grant(), user="mallory", provider_account_id="T0SIMTEAM:U0MALLORY"
    )
    reconnect = await runtime.executor.issue_link(github, "reauth", "refresh_token_revoked")
    page = await (await chromium.new_context()).new_page()
    await sign_in(page, web, "alice")
    before = vault_rows(runtime)

    for link in (connect.url, reconnect.url):
        response = await page.goto(link)
        assert response is not None and response.status == 403
        assert await outcome(page) == "wrong_person"
        assert "mallory (org acme)" in await page.inner_text("main")
        assert await page.query_selector("#continue") is None  # no button to press

    assert vault_rows(runtime) == before
    assert slack_sim.counters.endpoint("authorize") == 0  # the browser never reached the provider


async def test_alices_own_link_signs_her_in_and_connects(runtime, slack_sim, web, chromium):
    account, link = await runtime.executor.connect_link(Caller("acme", "alice"), "slack")
    page = await (await chromium.new_context()).new_page()
    await page.goto(link.url)  # signed out: sent to sign in first
    assert await page.query_selector("#person-alice") is not None
    async with page.expect_navigation(url="**/connect/*"):
        await page.click("#person-alice")
    assert await outcome(page) == "link_ready"
    async with page.expect_navigation(url="**/authorize?**"):
        await page.click("#continue")
    async with page.expect_navigation(url="**/oauth/callback?**"):
        await page.click("#allow")
    assert await outcome(page) == "reconnected"
    assert runtime.vault.accounts.get(account.id).status == "active"
