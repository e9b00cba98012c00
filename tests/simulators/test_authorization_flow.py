"""Consent page and PKCE authorization-code flow on both simulators, including denial and account choice."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sim_helpers import bearer, pkce_pair

REDIRECT_URI = "http://127.0.0.1:9/callback"


def consent(client, path: str, client_id: str, challenge: str | None, **extra: str) -> dict[str, str]:
    """Open the consent page, then submit it the way the page's form would."""
    params = {"client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "st-1", **extra}
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    page = client.get(path, params=params)
    assert page.status_code == 200
    assert 'id="allow"' in page.text and 'id="deny"' in page.text
    return params


def submit(client, path: str, form: dict[str, str]) -> dict[str, list[str]]:
    response = client.post(path, data=form)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    return parse_qs(urlsplit(location).query)


def slack_exchange(client, code: str, verifier: str | None, redirect_uri: str = REDIRECT_URI) -> dict:
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier:
        fields["code_verifier"] = verifier
    return client.post("/api/oauth.v2.access", data=fields, auth=("sim-slack-client", "sim-slack-secret")).json()


def github_exchange(client, code: str, verifier: str | None) -> dict:
    fields = {
        "client_id": "sim-github-client",
        "client_secret": "sim-github-secret",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        **({"code_verifier": verifier} if verifier else {}),
    }
    return client.post("/login/oauth/access_token", data=fields, headers={"Accept": "application/json"}).json()


def test_slack_pkce_flow_issues_a_grant_for_the_default_identity(slack_http, slack):
    verifier, challenge = pkce_pair()
    scope = "chat:write,channels:history"
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", challenge, scope=scope)
    page = slack_http.get("/oauth/v2/authorize", params=form).text
    assert "Grantkeeper Sim" in page and "U0SIMUSER" in page

    query = submit(slack_http, "/oauth/v2/authorize", {**form, "decision": "allow"})
    assert query["state"] == ["st-1"]
    tokens = slack_exchange(slack_http, query["code"][0], verifier)

    assert tokens["ok"] is True and tokens["scope"] == "chat:write,channels:history"
    assert tokens["team"]["id"] == "T0SIMTEAM" and tokens["authed_user"] == {"id": "U0SIMUSER"}
    assert slack_http.post("/api/auth.test", headers=bearer(tokens["access_token"])).json()["ok"] is True
    assert slack.counters.code_exchanges_ok == 1


def test_slack_consent_can_sign_in_as_another_user(slack_http, slack):
    verifier, challenge = pkce_pair()
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", challenge)
    other = {"team_id": "T0OTHER", "team_name": "Other Co", "user_id": "U0INTRUDER"}

    query = submit(slack_http, "/oauth/v2/authorize", {**form, **other, "decision": "allow"})
    tokens = slack_exchange(slack_http, query["code"][0], verifier)

    assert tokens["team"] == {"id": "T0OTHER", "name": "Other Co"}
    assert tokens["authed_user"] == {"id": "U0INTRUDER"}


def test_slack_wrong_code_verifier_is_refused_and_the_code_is_spent(slack_http, slack):
    verifier, challenge = pkce_pair()
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", challenge)
    code = submit(slack_http, "/oauth/v2/authorize", {**form, "decision": "allow"})["code"][0]

    assert slack_exchange(slack_http, code, "not-the-verifier") == {"ok": False, "error": "invalid_code"}
    assert slack_exchange(slack_http, code, verifier)["error"] == "invalid_code"
    assert slack.counters.code_exchange_failures == 2


def test_slack_missing_code_verifier_is_refused_when_a_challenge_was_sent(slack_http, slack):
    _, challenge = pkce_pair()
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", challenge)
    code = submit(slack_http, "/oauth/v2/authorize", {**form, "decision": "allow"})["code"][0]
    assert slack_exchange(slack_http, code, None)["error"] == "invalid_code"


def test_slack_redirect_uri_must_match_the_authorize_request(slack_http, slack):
    verifier, challenge = pkce_pair()
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", challenge)
    code = submit(slack_http, "/oauth/v2/authorize", {**form, "decision": "allow"})["code"][0]
    assert slack_exchange(slack_http, code, verifier, "http://127.0.0.1:9/elsewhere")["error"] == "bad_redirect_uri"


def test_replayed_authorization_code_is_refused_and_revokes_its_grant(slack_http, slack):
    verifier, challenge = pkce_pair()
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", challenge)
    code = submit(slack_http, "/oauth/v2/authorize", {**form, "decision": "allow"})["code"][0]
    tokens = slack_exchange(slack_http, code, verifier)

    assert slack_exchange(slack_http, code, verifier)["error"] == "invalid_code"
    assert slack_http.post("/api/auth.test", headers=bearer(tokens["access_token"])).json()["error"] == "token_revoked"


def test_authorization_code_expires_after_ten_minutes(slack_http, slack):
    verifier, challenge = pkce_pair()
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", challenge)
    code = submit(slack_http, "/oauth/v2/authorize", {**form, "decision": "allow"})["code"][0]
    slack.advance_clock(601)
    assert slack_exchange(slack_http, code, verifier)["error"] == "invalid_code"


def test_slack_deny_redirects_with_access_denied_and_state(slack_http, slack):
    form = consent(slack_http, "/oauth/v2/authorize", "sim-slack-client", None)
    query = submit(slack_http, "/oauth/v2/authorize", {**form, "decision": "deny"})
    assert query == {"error": ["access_denied"], "state": ["st-1"]}


def test_github_pkce_flow_issues_user_tokens_for_the_chosen_login(github_http, github):
    verifier, challenge = pkce_pair()
    form = consent(github_http, "/login/oauth/authorize", "sim-github-client", challenge)
    query = submit(github_http, "/login/oauth/authorize", {**form, "login": "hubot", "id": "42", "decision": "allow"})

    tokens = github_exchange(github_http, query["code"][0], verifier)
    assert tokens["access_token"].startswith("ghu_") and tokens["refresh_token"].startswith("ghr_")
    assert tokens["refresh_token_expires_in"] == 15811200 and tokens["scope"] == ""
    user = github_http.get("/user", headers=bearer(tokens["access_token"])).json()
    assert (user["login"], user["id"]) == ("hubot", 42)


def test_github_wrong_code_verifier_is_bad_verification_code(github_http, github):
    _, challenge = pkce_pair()
    form = consent(github_http, "/login/oauth/authorize", "sim-github-client", challenge)
    code = submit(github_http, "/login/oauth/authorize", {**form, "decision": "allow"})["code"][0]
    assert github_exchange(github_http, code, "wrong")["error"] == "bad_verification_code"


def test_github_deny_redirects_with_access_denied_and_description(github_http, github):
    form = consent(github_http, "/login/oauth/authorize", "sim-github-client", None)
    query = submit(github_http, "/login/oauth/authorize", {**form, "decision": "deny"})
    assert query["error"] == ["access_denied"] and query["state"] == ["st-1"]
    assert "denied" in query["error_description"][0]


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "someone-else", "redirect_uri": REDIRECT_URI},
        {"client_id": "sim-slack-client"},
        {
            "client_id": "sim-slack-client",
            "redirect_uri": REDIRECT_URI,
            "code_challenge": "x",
            "code_challenge_method": "plain",
        },
    ],
    ids=["unknown-client", "no-redirect-uri", "plain-pkce"],
)
def test_authorize_rejects_bad_requests_with_an_error_page(slack_http, slack, params):
    response = slack_http.get("/oauth/v2/authorize", params=params)
    assert response.status_code == 400 and 'id="allow"' not in response.text
