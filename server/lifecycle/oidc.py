"""OpenID Connect id_token verification (OIDC Core §3.1.3.7): the signature against the issuer's published keys
(JWKS), then issuer, audience, expiry and the nonce sealed with the flow. A verified `sub` names the account.

    claims = await IdTokenVerifier(http).verify(connector, id_token, nonce=flow["nonce"])
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

import httpx2
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from server.connectors import Connector

JWKS_MAX_BYTES = 256 * 1024
JWKS_TIMEOUT_SECONDS = 10.0
JWKS_CACHE_SECONDS = 3600.0
CLOCK_LEEWAY_SECONDS = 60
# Asymmetric algorithms only: `none` and HS256 (which a forger could sign with the public client id) are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class IdTokenRejected(Exception):
    """The id_token failed a check. `reason` is a short code, safe to log; the token itself never is."""

    def __init__(self, reason: str):
        super().__init__(f"id_token rejected: {reason}")
        self.reason = reason


class IdTokenVerifier:
    """Verifies id_tokens; keeps each issuer's key set for an hour, and re-reads it once when a token names a key
    it does not hold (the issuer rotated its keys)."""

    def __init__(self, http: httpx2.AsyncClient, *, clock: Any = time.time):
        self.http = http
        self.clock = clock
        self._keys: dict[str, tuple[float, KeySet]] = {}

    async def verify(self, connector: Connector, id_token: str, *, nonce: str) -> dict[str, Any]:
        spec = connector.spec
        if not spec.jwks_uri or not spec.issuer:
            raise IdTokenRejected("no_jwks")
        if len(id_token) > 16_384 or id_token.count(".") != 2:
            raise IdTokenRejected("malformed")
        keys = await self._key_set(spec.jwks_uri, fresh=False)
        try:
            token = self._decode(id_token, keys)
        except IdTokenRejected as rejected:
            if rejected.reason != "unknown_key":
                raise
            token = self._decode(id_token, await self._key_set(spec.jwks_uri, fresh=True))
        claims = token.claims
        self._check_claims(claims, issuer=spec.issuer, client_id=connector.client_id or "", nonce=nonce)
        return claims

    @staticmethod
    def _decode(id_token: str, keys: KeySet) -> Any:
        try:
            return jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        except InvalidKeyIdError:  # no key in the set has the header's kid: perhaps the issuer rotated its keys
            raise IdTokenRejected("unknown_key") from None
        except JoseError:
            raise IdTokenRejected("bad_signature") from None
        except (ValueError, TypeError):
            raise IdTokenRejected("malformed") from None

    def _check_claims(self, claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str) -> None:
        now = self.clock()
        if claims.get("iss") != issuer:
            raise IdTokenRejected("wrong_issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if client_id not in audiences:
            raise IdTokenRejected("wrong_audience")
        if len(audiences) > 1 and claims.get("azp") != client_id:
            raise IdTokenRejected("wrong_audience")
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= now - CLOCK_LEEWAY_SECONDS:
            raise IdTokenRejected("expired")
        issued = claims.get("iat")
        if isinstance(issued, int | float) and issued > now + CLOCK_LEEWAY_SECONDS:
            raise IdTokenRejected("issued_in_future")
        # Always required: the flow generated one, so a token without it (or a flow without one) is not this flow's.
        if not nonce or not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise IdTokenRejected("wrong_nonce")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise IdTokenRejected("no_subject")

    async def _key_set(self, uri: str, *, fresh: bool) -> KeySet:
        cached = self._keys.get(uri)
        if cached is not None and not fresh and time.monotonic() - cached[0] < JWKS_CACHE_SECONDS:
            return cached[1]
        try:
            async with self.http.stream(
                "GET", uri, timeout=JWKS_TIMEOUT_SECONDS, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise IdTokenRejected("jwks_unavailable")
                content = b""
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > JWKS_MAX_BYTES:
                        raise IdTokenRejected("jwks_too_large")
        except httpx2.HTTPError:
            raise IdTokenRejected("jwks_unavailable") from None
        try:
            keys = KeySet.import_key_set(json.loads(content))
        except (ValueError, TypeError, KeyError, JoseError):
            raise IdTokenRejected("jwks_malformed") from None
        self._keys[uri] = (time.monotonic(), keys)
        return keys
