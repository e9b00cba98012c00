"""The standards-following OAuth 2.0 simulator: RFC 6749 token endpoint, RFC 7009 revocation, RFC 8414 metadata,
RFC 6750 API errors, rotation and reuse detection, consent, and its control API."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sim_helpers import bearer, pkce_pair, simulators_from_the_command_line

from simulators import OAuth2Simulator, SimulatorServer

CLIENT = ("sim-oauth2-client", "sim-oauth2-secret")
REDIRECT_URI = "http://127.0.0.1:9/callback"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def serve(oauth2_server: SimulatorServer) -> Iterator[Callable[..., tuple[OAuth2Simulator, httpx2.Client]]]:
    clients: list[httpx2.Client] = []

    def serve(**options: object) -> tuple[OAuth2Simulator, httpx2.Client]:
        oauth2_server.app = OAuth2Simulator(**options)
        clients.append(httpx2.Client(base_url=oauth2_server.url, timeout=5))
        return oauth2_server.app, clients[-1]

    yield serve
    for client in clients:
        client.close()


def refresh(client: httpx2.Client, refresh_token: str, *, basic: bool = True) -> httpx2.Response:
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if basic:
        return client.post("/oauth/token", data=fields, auth=CLIENT)
    return client.post("/oauth/token", data={**fields, "client_id": CLIENT[0], "client_secret": CLIENT[1]})


def test_metadata_follows_rfc_8414(serve, oauth2_server):
    _sim, client = serve()
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    url = oauth2_server.url
    assert metadata["issuer"] == url
    assert metadata["token_endpoint"] == f"{url}/oauth/token"
    assert metadata["authorization_endpoint"] == f"{url}/oauth/authorize"
    assert metadata["revocation_endpoint"] == f"{url}/oauth/revoke"
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]


def test_metadata_can_name_another_issuer_or_be_absent(serve):
    _, client = serve(issuer="https://impostor.example")
    assert client.get("/.well-known/oauth-authorization-server").json()["issuer"] == "https://impostor.example"
    _, client = serve(metadata=False)
    assert client.get("/.well-known/oauth-authorization-server").status_code == 404


@pytest.mark.parametrize("basic", [True, False])
def test_refresh_accepts_basic_or_body_client_authentication_and_rotates(serve, basic):
    sim, client = serve()
    tokens = sim.issue_grant()
    response = refresh(client, tokens.refresh_token, basic=basic)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] != tokens.refresh_token and body["scope"] == "projects:read projects:write"
    assert client.get("/api/me", headers=bearer(tokens.access_token)).status_code == 401  # the old pair is gone
    assert client.get("/api/me", headers=bearer(body["access_token"])).json()["sub"] == "user-1"


def test_a_disabled_client_authentication_method_is_invalid_client(serve):
    sim, client = serve(auth_methods=("client_secret_basic",))
    response = refresh(client, sim.issue_grant().refresh_token, basic=False)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert "www-authenticate" not in response.headers  # Basic was not tried


def test_wrong_basic_credentials_get_401_with_a_basic_challenge(serve):
    _sim, client = serve()
    response = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"}, auth=("sim-oauth2-client", "wrong")
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_two_client_authentication_methods_at_once_are_refused(serve):
    _sim, client = serve()
    response = client.post(
        "/oauth/token",
        auth=CLIENT,
        data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": CLIENT[0], "client_secret": CLIENT[1]},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_reused_refresh_token_is_invalid_grant_and_revokes_the_family(serve):
    sim, client = serve()
    tokens = sim.issue_grant()
    fresh = refresh(client, tokens.refresh_token).json()
    reused = refresh(client, tokens.refresh_token)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert sim.counters.reuse_detections == 1
    assert refresh(client, fresh["refresh_token"]).json()["error"] == "invalid_grant"
    assert client.get("/api/me", headers=bearer(fresh["access_token"])).status_code == 401


def test_without_reuse_detection_a_reused_token_fails_alone(serve):
    sim, client = serve(reuse_detection=False)
    tokens = sim.issue_grant()
    fresh = refresh(client, tokens.refresh_token).json()
    assert refresh(client, tokens.refresh_token).json()["error"] == "invalid_grant"
    assert refresh(client, fresh["refresh_token"]).status_code == 200


def test_without_rotation_the_refresh_token_stays_valid_and_is_not_resent(serve):
    sim, client = serve(rotation=False)
    tokens = sim.issue_grant()
    first = refresh(client, tokens.refresh_token).json()
    second = refresh(client, tokens.refresh_token).json()
    assert "refresh_token" not in first and "refresh_token" not in second
    assert client.get("/api/me", headers=bearer(first["access_token"])).status_code == 200  # not superseded
    assert sim.counters.reuse_detections == 0


def test_a_refused_refresh_can_use_a_non_standard_error_code(serve):
    _sim, client = serve(refresh_error=("expired_refresh_token", 401))
    response = refresh(client, "rt_unknown")
    assert response.status_code == 401 and response.json()["error"] == "expired_refresh_token"


def test_unknown_grant_types_are_refused(serve):
    _, client = serve()
    response = client.post("/oauth/token", data={"grant_type": "password"}, auth=CLIENT)
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_api_errors_follow_rfc_6750(serve):
    sim, client = serve(default_scopes=["projects:read"])
    tokens = sim.issue_grant()
    missing = client.get("/api/projects")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="oauth2-sim"'
    sim.expire_access_tokens()
    expired = client.get("/api/projects", headers=bearer(tokens.access_token))
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    fresh = sim.issue_grant()
    no_scope = client.post("/api/projects", json={"name": "x"}, headers=bearer(fresh.access_token))
    assert no_scope.status_code == 403 and 'error="insufficient_scope"' in no_scope.headers["www-authenticate"]


def test_an_expired_token_can_get_a_non_standard_answer(serve):
    sim, client = serve(expired_token_response=(403, {"error": {"code": "TOKEN_EXPIRED"}}))
    tokens = sim.issue_grant()
    sim.expire_access_tokens()
    response = client.get("/api/me", headers=bearer(tokens.access_token))
    assert response.status_code == 403 and response.json() == {"error": {"code": "TOKEN_EXPIRED"}}


def test_rate_limits_answer_429_with_retry_after(serve):
    sim, client = serve()
    sim.rate_limit(count=1, retry_after=7)
    response = client.get("/api/me", headers=bearer(sim.issue_grant().access_token))
    assert response.status_code == 429 and response.headers["retry-after"] == "7"


def test_projects_api_creates_lists_reads_and_deletes(serve):
    sim, client = serve()
    auth = bearer(sim.issue_grant().access_token)
    created = client.post("/api/projects", json={"name": "Apollo", "description": "moon"}, headers=auth)
    assert created.status_code == 201 and created.json()["id"] == "p-1"
    assert client.get("/api/projects", params={"status": "active"}, headers=auth).json()["total"] == 1
    assert client.get("/api/projects/p-1", headers=auth).json()["description"] == "moon"
    assert client.post("/api/projects", json={}, headers=auth).status_code == 422
    assert client.delete("/api/projects/p-1", headers=auth).status_code == 204
    assert client.get("/api/projects/p-1", headers=auth).status_code == 404


def test_an_idempotency_key_replays_the_first_answer(serve):
    sim, client = serve()
    auth = {**bearer(sim.issue_grant().access_token), "Idempotency-Key": "k-123456"}
    first = client.post("/api/projects", json={"name": "Apollo"}, headers=auth)
    second = client.post("/api/projects", json={"name": "Apollo"}, headers=auth)
    assert first.json() == second.json() and second.headers["idempotency-replayed"] == "true"
    assert len(sim.projects()) == 1


def test_revocation_follows_rfc_7009(serve):
    sim, client = serve()
    tokens = sim.issue_grant()
    assert client.post("/oauth/revoke", data={"token": "never-issued"}, auth=CLIENT).status_code == 200
    revoked = client.post("/oauth/revoke", data={"token": tokens.refresh_token, "token_type_hint": "refresh_token"}, auth=CLIENT)
    assert revoked.status_code == 200
    assert client.get("/api/me", headers=bearer(tokens.access_token)).status_code == 401  # the grant ended
    assert client.post("/oauth/revoke", data={"token": "x"}).status_code == 401  # client authentication required
    hint = client.post("/oauth/revoke", data={"token": "x", "token_type_hint": "id_token"}, auth=CLIENT)
    assert hint.json()["error"] == "unsupported_token_type"


def test_consent_and_pkce_code_exchange(serve):
    _sim, client = serve()
    verifier, challenge = pkce_pair()
    params = {
        "client_id": CLIENT[0],
        "redirect_uri": REDIRECT_URI,
        "state": "st-1",
        "scope": "projects:read",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = client.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and 'id="allow"' in page.text and 'id="deny"' in page.text
    assert "Ada Lovelace (user-1)" in page.text
    denied = client.post("/oauth/authorize", data={**params, "decision": "deny"})
    assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]
    allowed = client.post("/oauth/authorize", data={**params, "decision": "allow", "sub": "user-2"})
    query = parse_qs(urlsplit(allowed.headers["location"]).query)
    assert query["state"] == ["st-1"]
    exchange = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT_URI}
    assert client.post("/oauth/token", data=exchange, auth=CLIENT).json()["error"] == "invalid_grant"  # no verifier
    allowed = client.post("/oauth/authorize", data={**params, "decision": "allow", "sub": "user-2"})
    code = parse_qs(urlsplit(allowed.headers["location"]).query)["code"][0]
    tokens = client.post("/oauth/token", data={**exchange, "code": code, "code_verifier": verifier}, auth=CLIENT).json()
    assert tokens["scope"] == "projects:read" and tokens["refresh_token"].startswith("rt_")
    assert client.get("/api/me", headers=bearer(tokens["access_token"])).json()["sub"] == "user-2"


def test_control_api_switches_rotation_and_error_shapes_and_seeds_projects(serve):
    sim, client = serve()
    assert client.post("/_sim/faults", json={"fault": "rotation", "enabled": False}).status_code == 200
    assert client.get("/_sim/stats").json()["rotation"] is False
    client.post("/_sim/faults", json={"fault": "refresh_error", "error": "bad_refresh_token", "status": 200})
    assert refresh(client, "rt_x").json()["error"] == "bad_refresh_token"
    client.post("/_sim/faults", json={"fault": "expired_response", "status": 400, "body": {"code": "EXPIRED"}})
    assert sim.expired_token_response == (400, {"code": "EXPIRED"})
    assert client.post("/_sim/faults", json={"fault": "expired_response", "status": 400}).status_code == 400
    assert client.post("/_sim/projects", json={"name": "Seeded"}).status_code == 201
    assert client.get("/_sim/projects").json()["projects"][0]["name"] == "Seeded"
    granted = client.post("/_sim/grants", json={}).json()
    assert client.get("/api/me", headers=bearer(granted["access_token"])).status_code == 200


def test_every_request_is_recorded_with_its_raw_path(serve):
    sim, client = serve()
    client.get("/api/projects/a%2Fb", params={"q": "1"})
    assert sim.requested_paths() == ["/api/projects/a%2Fb?q=1"]


def test_module_entry_point_serves_the_oauth2_simulator():
    with simulators_from_the_command_line("oauth2") as (process, output):
        assert "client_id=sim-oauth2-client client_secret=sim-oauth2-secret" in output
        [url] = re.findall(r"simulator: (http://\S+)", output)
        assert httpx2.get(f"{url}/.well-known/oauth-authorization-server").json()["issuer"] == url
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


# ---- OpenID Connect mode -----------------------------------------------------------------------------
def oidc_code_flow(
    client: httpx2.Client, *, scope: str, prompt: str | None = None, nonce: str = "n-1"
) -> tuple[dict, dict[str, list[str]]]:
    """Consent and code exchange; returns the token response and the callback's query."""
    verifier, challenge = pkce_pair()
    params = {
        "client_id": CLIENT[0],
        "redirect_uri": REDIRECT_URI,
        "state": "st-1",
        "scope": scope,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **({"prompt": prompt} if prompt else {}),
    }
    allowed = client.post("/oauth/authorize", data={**params, "decision": "allow"})
    query = parse_qs(urlsplit(allowed.headers["location"]).query)
    exchange = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    return client.post("/oauth/token", data=exchange, auth=CLIENT).json(), query


@pytest.mark.parametrize(
    ("scope", "prompt", "issued"),
    [
        ("openid offline_access projects:read", "consent", True),
        ("openid offline_access projects:read", None, False),  # OIDC Core §11: offline_access needs prompt=consent
        ("openid projects:read", "consent", False),
    ],
)
def test_oidc_mode_issues_refresh_tokens_by_the_stock_policy(serve, scope, prompt, issued):
    _sim, client = serve(oidc=True)
    tokens, query = oidc_code_flow(client, scope=scope, prompt=prompt)
    assert ("refresh_token" in tokens) is issued
    assert query["iss"] == [str(client.base_url).rstrip("/")]  # RFC 9207
    assert tokens["id_token"].count(".") == 2


def test_oidc_mode_publishes_discovery_and_a_key_that_verifies_its_id_tokens(serve):
    from joserfc import jwt
    from joserfc.jwk import KeySet

    _sim, client = serve(oidc=True)
    metadata = client.get("/.well-known/openid-configuration").json()
    issuer = str(client.base_url).rstrip("/")
    assert metadata["issuer"] == issuer and metadata["authorization_response_iss_parameter_supported"] is True
    assert "offline_access" in metadata["scopes_supported"]
    keys = KeySet.import_key_set(client.get(metadata["jwks_uri"].removeprefix(issuer)).json())
    tokens, _ = oidc_code_flow(client, scope="openid offline_access", prompt="consent", nonce="n-42")
    claims = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"]).claims
    assert (claims["iss"], claims["aud"], claims["sub"], claims["nonce"]) == (issuer, CLIENT[0], "user-1", "n-42")
    assert client.post("/_sim/faults", json={"fault": "refresh_tokens", "policy": "never"}).status_code == 200
    assert "refresh_token" not in oidc_code_flow(client, scope="openid offline_access", prompt="consent")[0]


def test_private_key_jwt_assertions_are_checked(serve, tmp_path):
    from authlib.oauth2.rfc7523 import private_key_jwt_sign
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048)
    sim, client = serve(oidc=True, auth_methods=("private_key_jwt",), client_public_key=key.as_dict(private=False))
    token_url = f"{str(client.base_url).rstrip('/')}/oauth/token"
    grant = sim.issue_grant()

    def refresh_with(assertion: str) -> httpx2.Response:
        return client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": grant.refresh_token,
                "client_assertion": assertion,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            },
        )

    good = private_key_jwt_sign(key, CLIENT[0], token_url)
    assert refresh_with(good).status_code == 200
    assert refresh_with(good).json()["error"] == "invalid_client"  # the same jti twice
    assert refresh_with(private_key_jwt_sign(RSAKey.generate_key(2048), CLIENT[0], token_url)).status_code == 401
    assert refresh_with(private_key_jwt_sign(key, "another-client", token_url)).status_code == 401
    assert refresh_with(private_key_jwt_sign(key, CLIENT[0], "https://elsewhere.example/token")).status_code == 401
    assert (
        client.post(
            "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": grant.refresh_token}, auth=CLIENT
        ).status_code
        == 401
    )  # a client secret is not accepted when only keys are
