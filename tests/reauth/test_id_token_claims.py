"""The id_token claim checks of OIDC Core §3.1.3.7, on claim sets no stock server would send (the signature and key
handling are exercised end to end against the simulator in test_oidc_declared_provider.py)."""

from __future__ import annotations

import httpx2
import pytest

from server.lifecycle.oidc import CLOCK_LEEWAY_SECONDS, IdTokenRejected, IdTokenVerifier

NOW = 1_800_000_000
ISSUER, CLIENT = "https://id.example", "client-1"
GOOD = {"iss": ISSUER, "aud": CLIENT, "sub": "u-1", "exp": NOW + 300, "iat": NOW, "nonce": "n-1"}


def check(**changes: object) -> None:
    claims = {key: value for key, value in {**GOOD, **changes}.items() if value is not None}
    verifier = IdTokenVerifier(httpx2.AsyncClient(), clock=lambda: NOW)
    verifier._check_claims(claims, issuer=ISSUER, client_id=CLIENT, nonce="n-1")


def test_a_good_claim_set_passes():
    check()
    check(aud=[CLIENT, "other"], azp=CLIENT)
    check(exp=NOW - CLOCK_LEEWAY_SECONDS + 1)  # within the leeway


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://id.example/"}, "wrong_issuer"),  # identical, not "equivalent"
        ({"iss": None}, "wrong_issuer"),
        ({"aud": "other"}, "wrong_audience"),
        ({"aud": [CLIENT, "other"]}, "wrong_audience"),  # several audiences need azp = the client
        ({"aud": [CLIENT, "other"], "azp": "other"}, "wrong_audience"),
        ({"exp": None}, "expired"),
        ({"exp": "tomorrow"}, "expired"),
        ({"exp": True}, "expired"),
        ({"exp": NOW - CLOCK_LEEWAY_SECONDS}, "expired"),
        ({"iat": NOW + 3600}, "issued_in_future"),
        ({"nonce": None}, "wrong_nonce"),
        ({"nonce": "n-2"}, "wrong_nonce"),
        ({"sub": None}, "no_subject"),
        ({"sub": ""}, "no_subject"),
        ({"sub": 42}, "no_subject"),
        ({"sub": "x" * 256}, "no_subject"),
    ],
)
def test_claims_that_do_not_fit_are_refused_with_a_reason(changes, reason):
    with pytest.raises(IdTokenRejected) as refused:
        check(**changes)
    assert refused.value.reason == reason


def test_a_flow_without_a_nonce_accepts_no_id_token():
    verifier = IdTokenVerifier(httpx2.AsyncClient(), clock=lambda: NOW)
    with pytest.raises(IdTokenRejected, match="wrong_nonce"):
        verifier._check_claims({**GOOD, "nonce": ""}, issuer=ISSUER, client_id=CLIENT, nonce="")
