"""The whole loop in a real headless Chromium: an agent's call gets `reauth_required`, the browser opens the magic
link, presses Continue, consents at the simulator, lands on grantkeeper's callback, and the agent's next call
returns `ok`.

Needs Debian's `chromium` (`apt-get install -y chromium`) and the `playwright` package; Playwright's own browser
download is never used. Without them these tests skip and say so."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from server.auth import create_api_key
from server.execute import Caller
from server.web.listener import listening
from simulators.seeding import seed_account
from tests.reauth.conftest import GITHUB_ALICE, SLACK_ALICE
from tests.support.web import http_session, vault_rows
from tests.web.test_stdio_and_cli_links import stdio_server

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

CHROMIUM = os.environ.get("GRANTKEEPER_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
READ = {"channel": "C0GENERAL", "limit": 1}

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("browser tests need the playwright package: pip install -e '.[test]'", allow_module_level=True)
if not Path(CHROMIUM).exists():  # pragma: no cover - depends on the machine
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium (or set GRANTKEEPER_TEST_CHROMIUM)",
        allow_module_level=True,
    )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def click_through(page: Page, link: str, decision: str = "allow", **identity: str) -> str:
    """Open the link, continue to the provider, answer its consent page; returns grantkeeper's outcome."""
    await page.goto(link)
    assert await page.get_attribute("#outcome", "data-outcome") == "link_ready"
    async with page.expect_navigation(url="**/authorize?**"):
        await page.click("#continue")
    for field, value in identity.items():
        await page.fill(f"#{field}", value)
    async with page.expect_navigation(url="**/oauth/callback?**"):
        await page.click(f"#{decision}")
    return await page.get_attribute("#outcome", "data-outcome")


async def test_chromium_reconnects_slack_for_an_agent_on_streamable_http(runtime, settings, slack_sim, web, browser):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.revoke()
    key = create_api_key(runtime.vault, org="acme", user="alice").key

    async with http_session(web, key) as agent:
        first = (await agent.call_tool("slack_read_channel", READ)).structured_content
        assert first["status"] == "reauth_required"

        page = await browser.new_page()
        assert await click_through(page, first["magic_link"]) == "reconnected"
        assert "Slack is reconnected" in await page.inner_text("#title")

        again = (await agent.call_tool("slack_read_channel", READ)).structured_content

    assert again["status"] == "ok" and again["messages"]
    assert runtime.vault.accounts.get(account.id).status == "active"
    assert len(runtime.vault.events.recent(account.id, kind="reauthorized")) == 1


async def test_chromium_reconnects_github_for_an_agent_on_stdio(runtime, settings, env, github_sim, browser, tmp_path):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id=GITHUB_ALICE)
    github_sim.revoke()

    with (tmp_path / "stderr.log").open("w") as errlog:
        async with stdio_client(stdio_server(env), errlog=errlog) as streams, ClientSession(*streams) as agent:
            await agent.initialize()
            first = (await agent.call_tool("github_search_issues", {"query": "bug"})).structured_content
            assert first["status"] == "reauth_required"

            page = await browser.new_page()
            assert await click_through(page, first["magic_link"]) == "reconnected"
            assert "@octocat" in await page.inner_text("main")

            again = (await agent.call_tool("github_search_issues", {"query": "bug"})).structured_content
    assert again["status"] == "ok"


async def test_chromium_declining_or_signing_in_as_someone_else_changes_nothing(runtime, settings, slack_sim, web, browser):
    seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.revoke()
    key = create_api_key(runtime.vault, org="acme", user="alice").key
    async with http_session(web, key) as agent:
        links = [(await agent.call_tool("slack_read_channel", READ)).structured_content["magic_link"] for _ in range(2)]
    before = {table: rows for table, rows in vault_rows(runtime).items() if table != "magic_link"}

    denied = await click_through(await browser.new_page(), links[0], decision="deny")
    intruder = await click_through(await browser.new_page(), links[1], user_id="U0INTRUDER")

    assert (denied, intruder) == ("access_denied", "identity_mismatch")
    # Opening each link spent it (its row says so); nothing else in the vault moved.
    assert {table: rows for table, rows in vault_rows(runtime).items() if table != "magic_link"} == before


@pytest.mark.parametrize("attacker_host", ["localhost", "127.0.0.1"])  # another site; the same site, another port
async def test_chromium_refuses_a_form_posted_by_another_origins_page(runtime, slack_sim, web, browser, attacker_host):
    """Mallory's connect link, posted by Mallory's page in the victim's Chromium. Even with the token of the
    victim's own page for that link (as if it had leaked), the browser's Origin / Sec-Fetch-Site give it away."""
    _, issued = await runtime.executor.connect_link(Caller("acme", "mallory"), "slack")
    page = await browser.new_page()
    await page.goto(issued.url)
    token = await page.get_attribute("input[name=csrf_token]", "value")
    attack = HTMLResponse(
        f'<form id="f" method="post" action="{issued.url}">'
        f'<input type="hidden" name="csrf_token" value="{token}"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    attacker_site = Starlette(routes=[Route("/", lambda request: attack)])
    before = vault_rows(runtime)

    async with listening(attacker_site, "127.0.0.1", 0) as attacker:
        assert urlsplit(web).hostname == "127.0.0.1"
        await page.goto(f"http://{attacker_host}:{urlsplit(attacker.url).port}/")
        await page.wait_for_url(issued.url)
        outcome = await page.get_attribute("#outcome", "data-outcome")

    assert outcome == "cross_site"
    assert "came from another site" in await page.inner_text("#title")
    assert vault_rows(runtime) == before
    # The link was not spent: the victim's own Continue still goes to the provider.
    await page.goto(issued.url)
    async with page.expect_navigation(url="**/authorize?**"):
        await page.click("#continue")


async def test_chromium_will_not_show_a_link_page_inside_another_sites_frame(runtime, slack_sim, web, browser):
    _, issued = await runtime.executor.connect_link(Caller("acme", "mallory"), "slack")
    framing = HTMLResponse(f'<p id="bait">Win a prize</p><iframe id="victim" src="{issued.url}"></iframe>')
    attacker_site = Starlette(routes=[Route("/", lambda request: framing)])
    async with listening(attacker_site, "127.0.0.1", 0) as attacker:
        page = await browser.new_page()
        await page.goto(f"http://localhost:{urlsplit(attacker.url).port}/", wait_until="load")
        [framed] = [frame for frame in page.frames if frame is not page.main_frame]
        assert await page.inner_text("#bait") == "Win a prize"
        assert await framed.query_selector("#outcome") is None  # Chromium refused to render it
        assert not framed.url.startswith(issued.url.split("/connect/")[0])
    # Shown on its own, the same page renders.
    await page.goto(issued.url)
    assert await page.get_attribute("#outcome", "data-outcome") == "link_ready"
