"""Verifying JWTs signed by someone else's keys: an IdP's id_tokens, an external authorization server's access
tokens. A generic helper (issuer, audience, expiry, not-before, an allow-list of algorithms that never holds
`none`), with the issuer's JWKS cached and re-fetched once when a token names a key it has not seen (rotation).

    keys = JwksCache(http, jwks_url)
    claims = await verify_jwt(token, keys, issuer=..., audience=..., algorithms=("RS256",))
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Collection
from typing import Any

import anyio
import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from server.identity.fetch import FetchError, fetch_json

MAX_TOKEN_LENGTH = 16 * 1024
JWKS_REFRESH_SECONDS = 300
# A token naming an unknown key (the IdP rotated) forces a re-fetch, but not more often than this: a stream of
# forged kids must not turn into a stream of requests to the IdP.
JWKS_MIN_REFETCH_SECONDS = 30


class JwtRejected(Exception):
    """Why a token was refused, in a word (`expired`, `wrong_audience`, …). Never carries the token."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JwksCache:
    """The signing keys at `url`, fetched when first needed, refreshed every few minutes and when an unknown `kid`
    shows up (at most every JWKS_MIN_REFETCH_SECONDS)."""

    def __init__(self, http: httpx2.AsyncClient, url: str, *, clock: Callable[[], float] = time.monotonic):
        self.http, self.url, self.clock = http, url, clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._forced_at = float("-inf")  # the last re-fetch an unknown kid asked for
        self._lock = anyio.Lock()
        self.fetches = 0

    async def keys(self, *, kid: str | None = None) -> KeySet:
        async with self._lock:
            now = self.clock()
            stale = now - self._fetched_at > JWKS_REFRESH_SECONDS
            missing = kid is not None and self._keys is not None and not _has_kid(self._keys, kid)
            forced = missing and now - self._forced_at > JWKS_MIN_REFETCH_SECONDS
            if forced:
                self._forced_at = now
            if self._keys is None or stale or forced:
                try:
                    document = (await fetch_json(self.http, self.url)).document
                    self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
                except (FetchError, JoseError, ValueError, TypeError, KeyError) as exc:
                    if self._keys is None:
                        raise JwtRejected("jwks_unavailable") from exc
                else:
                    self._fetched_at = now
                    self.fetches += 1
            return self._keys


def _header(token: str) -> dict[str, Any]:
    encoded = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except ValueError:
        raise JwtRejected("malformed") from None
    if not isinstance(header, dict):
        raise JwtRejected("malformed")
    return header


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


async def verify_jwt(
    token: str,
    keys: JwksCache,
    *,
    issuer: str,
    audience: str | Collection[str],
    algorithms: Collection[str],
    leeway: int = 60,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The verified claims, or `JwtRejected`. `audience`: the token's `aud` must contain one of these."""
    allowed = [alg for alg in algorithms if alg.lower() != "none"]
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise JwtRejected("malformed")
    header = _header(token)
    if header.get("alg") not in allowed:
        raise JwtRejected("algorithm_not_allowed")
    kid = header.get("kid")
    key_set = await keys.keys(kid=kid if isinstance(kid, str) else None)
    if isinstance(kid, str) and not _has_kid(key_set, kid):
        raise JwtRejected("unknown_key")
    try:
        decoded = jwt.decode(token, key_set, algorithms=allowed, registry=JWSRegistry(algorithms=allowed))
    except JoseError:
        raise JwtRejected("bad_signature") from None
    except (ValueError, TypeError):
        raise JwtRejected("malformed") from None
    claims = decoded.claims
    moment = int(now())
    if claims.get("iss") != issuer:
        raise JwtRejected("wrong_issuer")
    wanted = {audience} if isinstance(audience, str) else set(audience)
    presented = claims.get("aud")
    presented_set = {presented} if isinstance(presented, str) else set(presented) if isinstance(presented, list) else set()
    if not wanted & presented_set:
        raise JwtRejected("wrong_audience")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or exp + leeway < moment:
        raise JwtRejected("expired")
    if nbf is not None and (not isinstance(nbf, int | float) or nbf - leeway > moment):
        raise JwtRejected("not_yet_valid")
    return claims
