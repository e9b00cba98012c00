"""Consent pages and PKCE code flows of the Google and Zendesk simulators: allow, deny, choosing who signs in,
and Google's rules for when a code exchange carries a refresh token."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from sim_helpers import bearer, pkce_pair

REDIRECT_URI = "http://127.0.0.1:9/callback"
GOOGLE_AUTHORIZE, ZENDESK_AUTHORIZE = "/o/oauth2/v2/auth", "/oauth/authorizations/new"


def consent_form(client, path: str, client_id: str, challenge: str | None, **extra: str) -> dict[str, str]:
    params = {"client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "st-9", "response_type": "code", **extra}
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    page = client.get(path, params=params)
    assert page.status_code == 200
    assert 'id="allow"' in page.text and 'id="deny"' in page.text
    for key in ("access_type", "prompt"):
        if key in extra:  # provider-specific parameters survive the form
            assert f'name="{key}" value="{extra[key]}"' in page.text
    return params


def decide(client, path: str, form: dict[str, str], decision: str, **identity: str) -> dict[str, list[str]]:
    response = client.post(path, data={**form, **identity, "decision": decision})
    assert response.status_code == 302 and response.headers["location"].startswith(REDIRECT_URI)
    return parse_qs(urlsplit(response.headers["location"]).query)


def google_exchange(client, code: str, verifier: str | None) -> dict:
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": "sim-google-client",
        "client_secret": "sim-google-secret",
    }
    if verifier:
        fields["code_verifier"] = verifier
    return client.post("/token", data=fields).json()


def zendesk_exchange(client, code: str, verifier: str | None) -> dict:
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": "sim-zendesk-client",
        "client_secret": "sim-zendesk-secret",
        "scope": "read write",
    }
    if verifier:
        fields["code_verifier"] = verifier
    return client.post("/oauth/tokens", json=fields).json()


def test_google_offline_consent_returns_a_refresh_token_for_the_chosen_account(google_http, google):
    verifier, challenge = pkce_pair()
    form = consent_form(
        google_http,
        GOOGLE_AUTHORIZE,
        "sim-google-client",
        challenge,
        scope="https://www.googleapis.com/auth/gmail.readonly",
        access_type="offline",
        prompt="consent",
    )
    query = decide(google_http, GOOGLE_AUTHORIZE, form, "allow", email="bob@example.com", name="Bob")
    assert query["state"] == ["st-9"]

    tokens = google_exchange(google_http, query["code"][0], verifier)
    assert tokens["refresh_token"].startswith("1//0") and tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "https://www.googleapis.com/auth/gmail.readonly"
    profile = google_http.get("/gmail/v1/users/me/profile", headers=bearer(tokens["access_token"])).json()
    assert profile["emailAddress"] == "bob@example.com"


def test_google_gives_no_refresh_token_without_offline_access(google_http, google):
    verifier, challenge = pkce_pair()
    form = consent_form(google_http, GOOGLE_AUTHORIZE, "sim-google-client", challenge)
    tokens = google_exchange(google_http, decide(google_http, GOOGLE_AUTHORIZE, form, "allow")["code"][0], verifier)
    assert "access_token" in tokens and "refresh_token" not in tokens


def test_google_repeat_consent_needs_prompt_consent_to_get_a_new_refresh_token(google_http, google):
    def consent(**extra: str) -> dict:
        verifier, challenge = pkce_pair()
        form = consent_form(google_http, GOOGLE_AUTHORIZE, "sim-google-client", challenge, **extra)
        return google_exchange(google_http, decide(google_http, GOOGLE_AUTHORIZE, form, "allow")["code"][0], verifier)

    assert "refresh_token" in consent(access_type="offline")
    assert "refresh_token" not in consent(access_type="offline")  # Google only sends it on the first consent
    assert "refresh_token" in consent(access_type="offline", prompt="consent")


def test_google_wrong_verifier_and_deny(google_http, google):
    _, challenge = pkce_pair()
    form = consent_form(google_http, GOOGLE_AUTHORIZE, "sim-google-client", challenge, access_type="offline")
    code = decide(google_http, GOOGLE_AUTHORIZE, form, "allow")["code"][0]
    assert google_exchange(google_http, code, "wrong-verifier") == {"error": "invalid_grant", "error_description": "Bad Request"}
    denied = decide(google_http, GOOGLE_AUTHORIZE, form, "deny")
    assert denied == {"error": ["access_denied"], "state": ["st-9"]}


def test_zendesk_consent_exchanges_a_code_as_json_for_the_chosen_user(zendesk_http, zendesk):
    verifier, challenge = pkce_pair()
    form = consent_form(zendesk_http, ZENDESK_AUTHORIZE, "sim-zendesk-client", challenge, scope="read write")
    query = decide(zendesk_http, ZENDESK_AUTHORIZE, form, "allow", email="carl@acme.example", user_id="42")

    tokens = zendesk_exchange(zendesk_http, query["code"][0], verifier)
    assert tokens["token_type"] == "bearer" and tokens["scope"] == "read write"
    assert tokens["expires_in"] == 1800 and tokens["refresh_token_expires_in"] == 2592000
    me = zendesk_http.get("/api/v2/users/me", headers=bearer(tokens["access_token"])).json()["user"]
    assert (me["id"], me["email"]) == (42, "carl@acme.example")
    assert zendesk_exchange(zendesk_http, query["code"][0], verifier)["error"] == "invalid_grant"  # single use


def test_zendesk_wrong_verifier_and_deny(zendesk_http, zendesk):
    _, challenge = pkce_pair()
    form = consent_form(zendesk_http, ZENDESK_AUTHORIZE, "sim-zendesk-client", challenge)
    code = decide(zendesk_http, ZENDESK_AUTHORIZE, form, "allow")["code"][0]
    assert zendesk_exchange(zendesk_http, code, "wrong")["error"] == "invalid_grant"
    denied = decide(zendesk_http, ZENDESK_AUTHORIZE, form, "deny")
    assert denied["error"] == ["access_denied"] and denied["state"] == ["st-9"]
