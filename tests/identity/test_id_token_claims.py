"""The one id_token claim check (OIDC Core §3.1.3.7) that the sign-in and declared providers' connects share, on
claim sets no stock server would send. The signature and key handling, and that each caller refuses with this
check's reason and stores nothing, are exercised end to end against the simulators in test_sign_in.py and
tests/reauth/test_oidc_declared_provider.py."""

from __future__ import annotations

import pytest

from server.identity.id_token import check_id_token
from server.identity.jwt import CLOCK_LEEWAY_SECONDS, JwtRejected

NOW = 1_800_000_000
ISSUER, CLIENT = "https://id.example", "client-1"
GOOD = {"iss": ISSUER, "aud": CLIENT, "sub": "u-1", "exp": NOW + 300, "iat": NOW, "nonce": "n-1"}


def check(**changes: object) -> None:
    claims = {key: value for key, value in {**GOOD, **changes}.items() if value is not None}
    check_id_token(claims, issuer=ISSUER, client_id=CLIENT, nonce="n-1", now=NOW)


def test_a_good_claim_set_passes():
    check()
    check(aud=[CLIENT, "other"], azp=CLIENT)
    check(exp=NOW - CLOCK_LEEWAY_SECONDS + 1)  # within the leeway
    check(iat=NOW + CLOCK_LEEWAY_SECONDS)  # a provider's clock a little ahead
    check(sub="x" * 255)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://id.example/"}, "wrong_issuer"),  # identical, not "equivalent"
        ({"iss": None}, "wrong_issuer"),
        ({"aud": "other"}, "wrong_audience"),
        ({"aud": ["other", "another"], "azp": CLIENT}, "wrong_audience"),
        ({"aud": [CLIENT, "other"]}, "wrong_authorized_party"),  # several audiences need azp = the client
        ({"aud": [CLIENT, "other"], "azp": "other"}, "wrong_authorized_party"),
        ({"exp": None}, "expired"),
        ({"exp": "tomorrow"}, "expired"),
        ({"exp": True}, "expired"),
        ({"exp": NOW - CLOCK_LEEWAY_SECONDS}, "expired"),
        ({"nbf": NOW + 3600}, "not_yet_valid"),
        ({"iat": NOW + 3600}, "issued_in_future"),
        ({"nonce": None}, "wrong_nonce"),  # missing
        ({"nonce": "n-2"}, "wrong_nonce"),  # another flow's, or replayed
        ({"nonce": ["n-1"]}, "wrong_nonce"),
        ({"nonce": 1}, "wrong_nonce"),
        ({"sub": None}, "no_subject"),
        ({"sub": ""}, "no_subject"),
        ({"sub": 42}, "no_subject"),
        ({"sub": "x" * 256}, "no_subject"),
    ],
)
def test_claims_that_do_not_fit_are_refused_with_a_reason(changes, reason):
    with pytest.raises(JwtRejected) as refused:
        check(**changes)
    assert refused.value.reason == reason


def test_a_flow_without_a_nonce_accepts_no_id_token():
    with pytest.raises(JwtRejected) as refused:
        check_id_token({**GOOD, "nonce": ""}, issuer=ISSUER, client_id=CLIENT, nonce="", now=NOW)
    assert refused.value.reason == "wrong_nonce"
