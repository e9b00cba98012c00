"""The OpenID Connect provider simulator: discovery, JWKS with rotation, code + PKCE with nonce and RFC 9207 `iss`,
the login page, and the forged tokens tests use to attack grantkeeper's verifiers."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sim_helpers import pkce_pair

from simulators import OIDCSimulator, SimulatorServer, sign_in_over_http

REDIRECT_URI = "http://127.0.0.1:9/callback"
pytestmark = pytest.mark.anyio


@pytest.fixture
def idp() -> Iterator[tuple[OIDCSimulator, str]]:
    simulator = OIDCSimulator()
    with SimulatorServer(simulator) as server:
        simulator.issuer = server.url
        yield simulator, server.url


def authorize_url(base: str, challenge: str, **extra: str) -> str:
    params = {
        "client_id": "sim-oidc-client",
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid email",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{base}/authorize?{urlencode(params)}"


def verify(token: str, jwks: dict) -> dict:
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"]).claims


async def test_code_flow_with_pkce_nonce_and_iss(idp: tuple[OIDCSimulator, str]) -> None:
    _, base = idp
    verifier, challenge = pkce_pair()
    async with httpx2.AsyncClient(timeout=5) as client:
        discovery = (await client.get(f"{base}/.well-known/openid-configuration")).json()
        assert discovery["issuer"] == base and discovery["authorization_response_iss_parameter_supported"] is True
        back = await sign_in_over_http(client, authorize_url(base, challenge), "bob")
        query = parse_qs(urlsplit(back).query)
        assert query["state"] == ["st-1"] and query["iss"] == [base]
        code = query["code"][0]
        wrong = await client.post(
            f"{base}/token",
            auth=("sim-oidc-client", "sim-oidc-secret"),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": "x" * 50},
        )
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        # The failed attempt spent the code: it cannot be retried with the right verifier either.
        again = await client.post(
            f"{base}/token",
            auth=("sim-oidc-client", "sim-oidc-secret"),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
        )
        assert again.status_code == 400

        verifier, challenge = pkce_pair()
        code = parse_qs(urlsplit(await sign_in_over_http(client, authorize_url(base, challenge), "bob")).query)["code"][0]
        tokens = (
            await client.post(
                f"{base}/token",
                auth=("sim-oidc-client", "sim-oidc-secret"),
                data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
            )
        ).json()
        claims = verify(tokens["id_token"], (await client.get(discovery["jwks_uri"])).json())
        assert claims["email"] == "bob@acme.test" and claims["nonce"] == "n-1" and claims["aud"] == "sim-oidc-client"
        assert claims["iss"] == base
        info = await client.get(f"{base}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert info.json()["sub"] == "u-bob"


async def test_login_page_refuses_bad_requests(idp: tuple[OIDCSimulator, str]) -> None:
    simulator, base = idp
    async with httpx2.AsyncClient(timeout=5) as client:
        assert (await client.get(authorize_url(base, "c", client_id="nobody"))).status_code == 400
        assert (await client.get(authorize_url(base, "c", code_challenge_method="plain"))).status_code == 400
        assert (await client.get(authorize_url(base, "c", scope="email"))).status_code == 400
        simulator.add_client("strict", "s", [REDIRECT_URI])
        refused = await client.get(authorize_url(base, "c", client_id="strict", redirect_uri="http://127.0.0.1:9/x"))
        assert refused.status_code == 400 and "redirect_uri" in refused.text
        denied = await client.post(f"{base}/authorize", data={**parse_qs_flat(authorize_url(base, "c")), "decision": "deny"})
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]


def parse_qs_flat(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def test_key_rotation_keeps_old_key_until_retired(idp: tuple[OIDCSimulator, str]) -> None:
    simulator, base = idp
    old_token = simulator.forge("alice")
    async with httpx2.AsyncClient(timeout=5) as client:
        rotated = (await client.post(f"{base}/_sim/rotate-keys")).json()["kid"]
        jwks = (await client.get(f"{base}/jwks")).json()
        assert next(key["kid"] for key in jwks["keys"]) == rotated and len(jwks["keys"]) == 2
        assert verify(old_token, jwks)["email"] == "alice@acme.test"
        assert jwt.decode(simulator.forge("alice"), KeySet.import_key_set(jwks)).header["kid"] == rotated
        await client.post(f"{base}/_sim/rotate-keys", data={"retire_old": "true"})
        jwks = (await client.get(f"{base}/jwks")).json()
        assert len(jwks["keys"]) == 1
        with pytest.raises(JoseError):
            verify(old_token, jwks)


@pytest.mark.parametrize("bend", [{"alg": "none"}, {"bad_signature": True}, {"unknown_kid": True}])
async def test_forged_tokens_fail_signature_checks(idp: tuple[OIDCSimulator, str], bend: dict) -> None:
    _, base = idp
    async with httpx2.AsyncClient(timeout=5) as client:
        token = (await client.post(f"{base}/_sim/forge", json={"person": "carol", **bend})).json()["token"]
        jwks = (await client.get(f"{base}/jwks")).json()
    with pytest.raises((JoseError, ValueError)):
        verify(token, jwks)


async def test_forged_claims_are_as_asked(idp: tuple[OIDCSimulator, str]) -> None:
    _, base = idp
    async with httpx2.AsyncClient(timeout=5) as client:
        jwks = (await client.get(f"{base}/jwks")).json()
        forged = (
            await client.post(
                f"{base}/_sim/forge",
                json={"person": "alice", "aud": "https://other", "iss": "https://evil", "expires_in": -10, "not_before_in": 60},
            )
        ).json()["token"]
        bad = (await client.post(f"{base}/_sim/forge", json={"person": "nobody"})).json()
    claims = verify(forged, jwks)
    assert claims["aud"] == "https://other" and claims["iss"] == "https://evil"
    assert claims["exp"] < claims["iat"] < claims["nbf"]
    assert "error" in bad
