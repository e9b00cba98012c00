"""Connect and reconnect links only their owner can complete. With sign-in: the signed-in org/user must be the
link's; anyone else is refused and nothing is written. Without sign-in over HTTP: an agent-made first-time
connect link is refused (admin_action_required) unless the operator accepts the risk; stdio is unchanged."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from server.execute import Caller
from server.web.app import build_web_app
from server.web.listener import listening
from simulators.seeding import seed_account
from tests.support.web import outcome_of, vault_rows

pytestmark = pytest.mark.anyio


async def agent_connect_link(runtime, user: str, connector: str = "slack") -> str:
    _, link = await runtime.executor.connect_link(Caller("acme", user), connector)
    return link.url


async def test_mallorys_link_in_alices_signed_in_browser_is_refused_and_writes_nothing(runtime, web, browser_factory):
    link = await agent_connect_link(runtime, "mallory")
    alice = browser_factory()
    await alice.sign_in(web, "alice")
    before = vault_rows(runtime)
    shown = await alice.client.get(link)
    pressed = await alice.client.post(link)  # no page, so no form token: refused before the guard is even asked
    assert (shown.status_code, outcome_of(shown)) == (403, "wrong_person")
    assert pressed.status_code == 403
    assert "mallory (org acme)" in shown.text and "alice (org acme)" in shown.text
    assert vault_rows(runtime) == before


async def test_a_reconnect_link_is_refused_to_another_person_too(runtime, settings, slack_sim, web, browser_factory):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), user="mallory")
    link = (await runtime.executor.issue_link(account, "reauth", "refresh_token_revoked")).url
    bob = browser_factory()
    await bob.sign_in(web, "bob")
    before = vault_rows(runtime)
    assert outcome_of(await bob.client.get(link)) == "wrong_person"
    assert (await bob.client.post(link)).status_code == 403
    assert vault_rows(runtime) == before


async def test_an_operator_link_is_bound_to_its_user(runtime, web, browser_factory):
    _, issued = await runtime.executor.connect_link(Caller("acme", "bob"), "slack", issued_by="operator")
    carol = browser_factory()
    await carol.sign_in(web, "carol")  # globex/carol
    assert outcome_of(await carol.client.get(issued.url)) == "wrong_person"


async def test_opening_a_link_signed_out_asks_to_sign_in_then_continues_for_its_owner(runtime, web, browser_factory):
    link = await agent_connect_link(runtime, "mallory")
    mallory = browser_factory()
    asked = await mallory.client.get(link)
    assert asked.status_code == 303 and asked.headers["location"].startswith("/login?next=")
    assert unquote(asked.headers["location"].split("next=")[1]) == link.removeprefix(web)
    landed = await mallory.sign_in(web, "mallory", next_path=link.removeprefix(web))
    assert outcome_of(landed) == "link_ready"
    token = landed.text.split('name="csrf_token" value="')[1].split('"')[0]
    started = await mallory.client.post(link, data={"csrf_token": token})
    assert started.status_code == 303
    assert started.headers["location"].startswith(runtime.connectors["slack"].authorize_url)


@pytest.mark.no_sign_in
async def test_without_sign_in_an_agents_first_connect_link_is_refused_over_http(
    runtime, settings, github_sim, web, browser_factory
):
    link = await agent_connect_link(runtime, "alice")
    before = vault_rows(runtime)
    browser = browser_factory()
    answer = await browser.client.get(link)
    assert (answer.status_code, outcome_of(answer)) == (403, "admin_action_required")
    assert "GRANTKEEPER_OIDC_ISSUER" in answer.text
    assert (await browser.client.post(link)).status_code == 403
    assert vault_rows(runtime) == before

    # A reconnect link (the provider account is pinned), an operator's link: as before.
    account = seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id="1")
    reconnect = (await runtime.executor.issue_link(account, "reauth", "refresh_token_revoked")).url
    assert outcome_of(await browser.client.get(reconnect)) == "link_ready"
    _, operator = await runtime.executor.connect_link(Caller("acme", "bob"), "slack", issued_by="operator")
    assert outcome_of(await browser.client.get(operator.url)) == "link_ready"

    runtime.settings.allow_unverified_connect_links = True
    assert outcome_of(await browser.client.get(link)) == "link_ready"


@pytest.mark.no_sign_in
async def test_without_sign_in_stdio_pages_serve_agent_links_as_before(runtime, browser_factory):
    async with listening(build_web_app(runtime), "127.0.0.1", 0) as listener:
        runtime.settings.public_url = listener.url
        link = await agent_connect_link(runtime, "alice")
        assert outcome_of(await browser_factory().client.get(link)) == "link_ready"
