"""OpenID Connect id_token verification for declared providers (OIDC Core §3.1.3.7): the signature, issuer,
audience and expiry through the one JWT verifier (server/identity/jwt.py), then what OIDC adds — the authorized
party, the issue time, the nonce sealed with the flow and a subject. A verified `sub` names the account.

    claims = await IdTokenVerifier(http).verify(connector, id_token, nonce=flow["nonce"])
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx2

from server.connectors import Connector
from server.identity.jwt import CLOCK_LEEWAY_SECONDS, JwksCache, JwtRejected, check_claims, verify_signature

# Asymmetric algorithms only: `none` and HS256 (which a forger could sign with the public client id) are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class IdTokenRejected(Exception):
    """The id_token failed a check. `reason` is a short code, safe to log; the token itself never is."""

    def __init__(self, reason: str):
        super().__init__(f"id_token rejected: {reason}")
        self.reason = reason


class IdTokenVerifier:
    """Verifies id_tokens, keeping each issuer's key set (`JwksCache`: refreshed every few minutes, and re-read
    once when a token names a key it does not hold, as after the issuer rotated its keys)."""

    def __init__(self, http: httpx2.AsyncClient, *, clock: Callable[[], float] = time.time):
        self.http = http
        self.clock = clock
        self._keys: dict[str, JwksCache] = {}

    async def verify(self, connector: Connector, id_token: str, *, nonce: str) -> dict[str, Any]:
        spec = connector.spec
        if not spec.jwks_uri or not spec.issuer:
            raise IdTokenRejected("no_jwks")
        keys = self._keys.get(spec.jwks_uri)
        if keys is None:
            keys = self._keys[spec.jwks_uri] = JwksCache(self.http, spec.jwks_uri)
        try:
            claims = await verify_signature(id_token, keys, algorithms=ALGORITHMS)
        except JwtRejected as rejected:
            raise IdTokenRejected(rejected.reason) from None
        self._check_claims(claims, issuer=spec.issuer, client_id=connector.client_id or "", nonce=nonce)
        return claims

    def _check_claims(self, claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str) -> None:
        now = self.clock()
        try:
            check_claims(claims, issuer=issuer, audience=client_id, now=now)
        except JwtRejected as rejected:
            raise IdTokenRejected(rejected.reason) from None
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
            raise IdTokenRejected("wrong_audience")
        issued = claims.get("iat")
        if isinstance(issued, int | float) and issued > now + CLOCK_LEEWAY_SECONDS:
            raise IdTokenRejected("issued_in_future")
        # Always required: the flow generated one, so a token without it (or a flow without one) is not this flow's.
        if not nonce or not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise IdTokenRejected("wrong_nonce")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise IdTokenRejected("no_subject")
