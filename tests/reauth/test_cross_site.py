"""Cross-site request forgery against the link pages: the attack of issue 7 (an attacker mints a connect link for
their own pending account and makes a victim's browser press Continue) and its variants are refused before the
link is spent, with the vault unchanged row for row; the owner's own browser still completes the link after."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from server.execute import Caller
from tests.support.web import outcome_of, vault_rows

pytestmark = pytest.mark.anyio
FORM_FIELD = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


async def attackers_connect_link(runtime) -> str:
    """Mallory's own connect link (any API key can mint one for its caller's pending account)."""
    _, issued = await runtime.executor.connect_link(Caller("acme", "mallory"), "slack")
    return issued.url


def same_origin(link: str) -> dict[str, str]:
    parts = urlsplit(link)
    return {"Origin": f"{parts.scheme}://{parts.netloc}", "Sec-Fetch-Site": "same-origin"}


async def page_token(user, link: str) -> str:
    page = await user.open(link)
    assert page.status_code == 200 and outcome_of(page) == "link_ready"
    return FORM_FIELD.search(page.text).group(1)


async def assert_refused(runtime, user, link, outcome, **post) -> None:
    before = vault_rows(runtime)
    refused = await user.client.post(link, **post)
    assert (refused.status_code, outcome_of(refused)) == (403, outcome), refused.text[:400]
    assert "Nothing was changed." in refused.text and "location" not in refused.headers
    assert vault_rows(runtime) == before


async def test_a_foreign_origin_is_refused_even_with_a_valid_token_and_the_vault_is_unchanged(runtime, slack_sim, web, user):
    link = await attackers_connect_link(runtime)
    token = await page_token(user, link)  # even a browser holding the page's own token and cookie
    for headers in (
        {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://attacker.example"},  # a browser without Fetch metadata
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},  # another port on this host
        {"Origin": "null"},  # a sandboxed frame or data: URL
        {"Origin": f"{web}.attacker.example", "Sec-Fetch-Site": "same-origin"},
    ):
        await assert_refused(runtime, user, link, "cross_site", data={"csrf_token": token}, headers=headers)
    # The link was not spent: its owner's browser still completes it.
    assert (await user.start(link)).status_code == 303


async def test_a_rebound_host_name_does_not_make_its_own_origin_ours(runtime, slack_sim, web, user):
    """DNS rebinding: the attacker's name resolves to this server, so its page's requests carry its own Host and
    Origin. Only loopback names and the public host count as ours."""
    link = await attackers_connect_link(runtime)
    port = urlsplit(web).port
    token = await page_token(user, link)
    rebound = {
        "Host": f"rebind.attacker.example:{port}",
        "Origin": f"http://rebind.attacker.example:{port}",
        "Sec-Fetch-Site": "same-origin",
    }
    await assert_refused(runtime, user, link, "cross_site", data={"csrf_token": token}, headers=rebound)
    # Opening the page as http://localhost:<port> (another loopback name for the same server) still works.
    via_localhost = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}", "Sec-Fetch-Site": "same-origin"}
    started = await user.client.post(link, data={"csrf_token": token}, headers=via_localhost)
    assert started.status_code == 303


async def test_a_post_without_the_pages_token_is_refused_and_the_vault_is_unchanged(runtime, slack_sim, web, user):
    link = await attackers_connect_link(runtime)
    token = await page_token(user, link)
    other_link = await attackers_connect_link(runtime)
    other_token = await page_token(user, other_link)
    mangled = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for data in (
        {},
        {"csrf_token": ""},
        {"csrf_token": mangled},
        {"csrf_token": other_token},  # another link's
        {"csrf_token": token * 50},
        {"csrf_token": ["a", "b"]},
    ):
        await assert_refused(runtime, user, link, "form_token_invalid", data=data, headers=same_origin(link))
    # The right token in a JSON or multipart body, or in a huge body, is not our form either.
    await assert_refused(runtime, user, link, "form_token_invalid", json={"csrf_token": token}, headers=same_origin(link))
    await assert_refused(
        runtime,
        user,
        link,
        "form_token_invalid",
        content=f"csrf_token={token}&pad=".encode() + b"x" * 5_000_000,
        headers={**same_origin(link), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (await user.start(link)).status_code == 303


async def test_a_token_is_bound_to_the_browser_that_received_the_page(runtime, slack_sim, web, user):
    from simulators.person import link_user

    link = await attackers_connect_link(runtime)
    token = await page_token(user, link)  # the attacker's browser fetched the page and its token
    async with link_user() as victim:
        await page_token(victim, link)  # the victim's browser has its own nonce cookie
        await assert_refused(runtime, victim, link, "form_token_invalid", data={"csrf_token": token}, headers=same_origin(link))
    async with link_user() as fresh:  # a browser that never saw the page has no cookie at all
        await assert_refused(runtime, fresh, link, "form_token_invalid", data={"csrf_token": token}, headers=same_origin(link))


async def test_clients_without_browser_headers_still_need_the_token(runtime, slack_sim, web, user):
    link = await attackers_connect_link(runtime)
    await assert_refused(runtime, user, link, "form_token_invalid", data={})
    token = await page_token(user, link)
    started = await user.client.post(link, data={"csrf_token": token})  # no Origin, no Sec-Fetch-Site: curl
    assert started.status_code == 303 and "/authorize?" in started.headers["location"]


async def test_pages_refuse_framing_and_the_token_is_never_logged(runtime, slack_sim, web, user, log_output):
    link = await attackers_connect_link(runtime)
    page = await user.open(link)
    token = FORM_FIELD.search(page.text).group(1)
    nonce = user.client.cookies["gk_form"]
    refused = await user.client.post(link, data={"csrf_token": token}, headers={"Origin": "http://evil.example"})
    await user.client.post(link, data={"csrf_token": ("y" if token[0] == "x" else "x") + token[1:]}, headers=same_origin(link))
    started = await user.start(link)

    for response in (page, refused, started):
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    cookie = page.headers["set-cookie"]
    assert "gk_form=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert nonce not in page.text  # the page carries only the signed token, never the cookie's nonce
    logged = log_output.getvalue()
    assert "cross_site_request_refused" in logged and "form_token_refused" in logged
    assert token not in logged and nonce not in logged
