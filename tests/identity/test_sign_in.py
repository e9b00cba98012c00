"""Sign-in through the OIDC provider simulator: a session opens only when the id_token proves who this is; the
session is server-side (the cookie's hash is stored), ends at logout (CSRF-protected), idle and absolute
lifetimes; the sign-in policy (domains, groups, admins) holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from server.identity.models import BrowserSession, SignInFlow
from server.identity.sessions import SESSION_COOKIE
from server.vault.crypto import hash_token
from server.vault.models import utcnow
from simulators import OIDCSimulator, sign_in_over_http
from tests.identity.conftest import query_of
from tests.support.web import outcome_of

pytestmark = pytest.mark.anyio


def sessions(runtime) -> list[BrowserSession]:
    with Session(runtime.vault.engine) as session:
        return list(session.exec(select(BrowserSession)))


async def test_sign_in_opens_a_server_side_session(runtime, web, browser_factory):
    browser = browser_factory()
    page = await browser.sign_in(web, "bob")
    assert outcome_of(page) == "signed_in" and "bob (org acme)" in page.text
    cookie = browser.client.cookies.get(SESSION_COOKIE)
    [row] = sessions(runtime)
    assert (row.org, row.user, row.email, row.is_admin) == ("acme", "bob", "bob@acme.test", False)
    assert row.session_hash == hash_token(cookie) and cookie not in str(row.model_dump())
    # The cookie attributes, as the browser receives them.
    started = await browser_factory().client.get(f"{web}/login")
    assert "httponly" in started.headers["set-cookie"].lower() and "samesite=lax" in started.headers["set-cookie"].lower()


async def test_the_session_cookie_is_httponly_and_lax(web, browser_factory, idp):
    browser = browser_factory()
    started = await browser.client.get(f"{web}/login")
    back = await sign_in_over_http(browser.client, started.headers["location"], "alice")
    finished = await browser.client.get(back)
    header = finished.headers["set-cookie"].lower()
    assert f"{SESSION_COOKIE}=" in header and "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert "secure" not in header.split(f"{SESSION_COOKIE}=")[1].split(",")[0]  # http://127.0.0.1: not Secure


@pytest.mark.parametrize(
    "bend, reason",
    [
        ({"aud": "someone-else"}, "id_token_wrong_audience"),
        ({"iss": "https://evil.example"}, "id_token_wrong_issuer"),
        ({"expires_in": -600}, "id_token_expired"),
        ({"not_before_in": 600}, "id_token_not_yet_valid"),
        ({"alg": "none"}, "id_token_algorithm_not_allowed"),
        ({"bad_signature": True}, "id_token_bad_signature"),
        ({"unknown_kid": True}, "id_token_unknown_key"),
        ({"nonce": "replayed-nonce"}, "id_token_wrong_nonce"),
        ({"nonce": None}, "id_token_wrong_nonce"),  # no nonce at all
        ({"extra": {"iat": 4_000_000_000}}, "id_token_issued_in_future"),
        ({"extra": {"sub": None}}, "id_token_no_subject"),
        ({"extra": {"sub": "x" * 256}}, "id_token_no_subject"),
    ],
)
async def test_a_bad_id_token_opens_no_session(runtime, web, browser_factory, idp: OIDCSimulator, bend, reason):
    idp.bend_next_id_token = bend
    page = await browser_factory().sign_in(web, "alice")
    assert page.status_code == 502 and outcome_of(page) == "signin_failed" and reason in page.text
    assert sessions(runtime) == []


async def test_an_id_token_for_several_audiences_must_name_us_as_authorized_party(
    runtime, web, browser_factory, idp: OIDCSimulator
):
    idp.bend_next_id_token = {"aud": [idp.client_id, "another-client"], "extra": {"azp": "another-client"}}
    page = await browser_factory().sign_in(web, "alice")
    assert page.status_code == 502 and "id_token_wrong_authorized_party" in page.text
    assert sessions(runtime) == []
    idp.bend_next_id_token = {"aud": [idp.client_id, "another-client"]}  # azp: this client, as the simulator sends
    assert outcome_of(await browser_factory().sign_in(web, "alice")) == "signed_in"


async def test_rfc9207_iss_must_match_when_the_provider_offers_it(runtime, web, browser_factory):
    browser = browser_factory()
    started = await browser.client.get(f"{web}/login")
    back = await sign_in_over_http(browser.client, started.headers["location"], "alice")
    forged = back.replace("iss=", "iss=https%3A%2F%2Fevil.example&was=")
    page = await browser.client.get(forged)
    assert page.status_code == 400 and "iss_mismatch" in page.text

    started = await browser.client.get(f"{web}/login")
    back = await sign_in_over_http(browser.client, started.headers["location"], "alice")
    stripped = back.replace("iss=", "was=")
    page = await browser.client.get(stripped)
    assert page.status_code == 400 and "iss_missing" in page.text
    assert sessions(runtime) == []


async def test_a_callback_is_used_once_and_only_in_the_browser_that_started_it(runtime, web, browser_factory):
    alice, other = browser_factory(), browser_factory()
    started = await alice.client.get(f"{web}/login")
    back = await sign_in_over_http(alice.client, started.headers["location"], "alice")
    stolen = await other.client.get(back)  # the callback URL replayed in another browser (login CSRF)
    assert stolen.status_code == 400 and "other_browser" in stolen.text
    # That attempt spent the state: the right browser cannot use it afterwards either.
    late = await alice.client.get(back)
    assert late.status_code == 400 and "state_unknown" in late.text
    for state in ("", "x" * 500, "never-issued"):
        assert (await alice.client.get(f"{web}/login/callback", params={"state": state})).status_code == 400
    assert sessions(runtime) == []


async def test_next_is_a_local_path_only(web, browser_factory):
    for hostile in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "/ok\r\nSet-Cookie: x=1"):
        browser = browser_factory()
        landed = await browser.sign_in(web, "alice", next_path=hostile)
        assert outcome_of(landed) == "signed_in", hostile  # sent to the sign-in page, not away


async def test_logout_needs_the_pages_csrf_token(runtime, web, browser_factory):
    browser = browser_factory()
    page = await browser.sign_in(web, "alice")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    forged = await browser.client.post(f"{web}/logout", data={"csrf_token": "0" * 64})
    assert forged.status_code == 403 and outcome_of(forged) == "csrf_refused"
    assert outcome_of(await browser.client.get(f"{web}/login")) == "signed_in"
    done = await browser.client.post(f"{web}/logout", data={"csrf_token": token})
    assert outcome_of(done) == "signed_out"
    [row] = sessions(runtime)
    assert row.revoked_at is not None
    again = await browser.client.get(f"{web}/login")
    assert again.status_code == 303  # signed out: /login starts a new sign-in


async def test_idle_and_absolute_lifetimes_end_a_session(runtime, web, browser_factory):
    browser = browser_factory()
    await browser.sign_in(web, "alice")
    [row] = sessions(runtime)
    idle = timedelta(seconds=runtime.settings.session_idle_seconds + 1)
    with Session(runtime.vault.engine) as session:
        session.exec(update(BrowserSession).where(BrowserSession.id == row.id).values(last_seen_at=utcnow() - idle))
        session.commit()
    assert (await browser.client.get(f"{web}/login")).status_code == 303
    await browser.sign_in(web, "alice")
    with Session(runtime.vault.engine) as session:
        session.exec(update(BrowserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert (await browser.client.get(f"{web}/login")).status_code == 303


@pytest.fixture
def policy_env(monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_OIDC_ALLOWED_EMAIL_DOMAINS", "acme.test, globex.test")
    monkeypatch.setenv("GRANTKEEPER_OIDC_REQUIRED_GROUP", "engineering")
    monkeypatch.setenv("GRANTKEEPER_ADMIN_GROUP", "grantkeeper-admins")


async def test_the_sign_in_policy_decides_who_may_enter_and_who_is_admin(policy_env, runtime, web, browser_factory):
    outsider = await browser_factory().sign_in(web, "eve")  # elsewhere.test
    assert outsider.status_code == 403 and "email domain" in outsider.text
    not_in_group = await browser_factory().sign_in(web, "mallory")  # sales
    assert not_in_group.status_code == 403 and "group" in not_in_group.text
    assert outcome_of(await browser_factory().sign_in(web, "alice")) == "signed_in"
    assert outcome_of(await browser_factory().sign_in(web, "carol")) == "signed_in"
    people = {(row.org, row.user): row.is_admin for row in sessions(runtime)}
    assert people == {("acme", "alice"): True, ("globex", "carol"): False}


async def test_flows_are_sealed_and_spent(runtime, web, browser_factory):
    browser = browser_factory()
    started = await browser.client.get(f"{web}/login")
    state = query_of(started.headers["location"])["state"]
    with Session(runtime.vault.engine) as session:
        [flow] = session.exec(select(SignInFlow)).all()
    assert flow.state_hash == hash_token(state) and state.encode() not in flow.ciphertext
    await browser.finish_at_idp(started.headers["location"], "alice")
    with Session(runtime.vault.engine) as session:
        assert session.exec(select(SignInFlow)).one().used_at is not None
