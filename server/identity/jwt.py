"""The one verifier of JWTs signed by someone else's keys: an external authorization server's access tokens
(server/identity/resource_server.py) and OpenID Connect id_tokens, the sign-in IdP's and declared providers' alike
(server/identity/id_token.py, which adds OIDC's own claims: azp, iat, nonce, sub). The signature against the
issuer's JWKS (cached, re-fetched once when a token names a key it has not seen: rotation) under an allow-list of
algorithms that never holds `none`; then issuer, audience, expiry and not-before.

    keys = JwksCache(http, jwks_url)
    claims = await verify_jwt(token, keys, issuer=..., audience=..., algorithms=("RS256",))
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Collection
from typing import Any, TypeGuard

import anyio
import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from server.identity.fetch import DocumentTooLarge, FetchError, NotAJsonObject, fetch_json

MAX_TOKEN_LENGTH = 16 * 1024
CLOCK_LEEWAY_SECONDS = 60
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
                    if self._keys is None:  # (with keys in hand, a failed refresh keeps them)
                        raise JwtRejected(_jwks_failure(exc)) from exc
                else:
                    self._fetched_at = now
                    self.fetches += 1
            return self._keys


def _jwks_failure(exc: Exception) -> str:
    if isinstance(exc, DocumentTooLarge):
        return "jwks_too_large"
    if isinstance(exc, FetchError) and not isinstance(exc, NotAJsonObject):
        return "jwks_unavailable"
    return "jwks_malformed"  # not JSON, or JSON that is no key set


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
    leeway: int = CLOCK_LEEWAY_SECONDS,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The verified claims, or `JwtRejected`. `audience`: the token's `aud` must contain one of these."""
    claims = await verify_signature(token, keys, algorithms=algorithms)
    check_claims(claims, issuer=issuer, audience=audience, leeway=leeway, now=now())
    return claims


async def verify_signature(token: str, keys: JwksCache, *, algorithms: Collection[str]) -> dict[str, Any]:
    """The claims of `token` once its signature checks out against `keys` (no claim is checked yet), or
    `JwtRejected`: `malformed`, `algorithm_not_allowed`, `unknown_key`, `bad_signature`, `jwks_*`."""
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
    return decoded.claims


def check_claims(
    claims: dict[str, Any], *, issuer: str, audience: str | Collection[str], leeway: int = CLOCK_LEEWAY_SECONDS, now: float
) -> None:
    """RFC 7519's registered claims, or `JwtRejected`: `iss` is `issuer` exactly, `aud` holds one of `audience`,
    `exp` (required) has not passed and `nbf` (if any) has, each give or take `leeway` seconds."""
    if claims.get("iss") != issuer:
        raise JwtRejected("wrong_issuer")
    wanted = {audience} if isinstance(audience, str) else set(audience)
    presented = claims.get("aud")
    presented_set = {presented} if isinstance(presented, str) else set()
    if isinstance(presented, list):
        presented_set = {item for item in presented if isinstance(item, str)}
    if not wanted & presented_set:
        raise JwtRejected("wrong_audience")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not _is_time(exp) or exp + leeway <= now:
        raise JwtRejected("expired")
    if nbf is not None and (not _is_time(nbf) or nbf - leeway > now):
        raise JwtRejected("not_yet_valid")


def _is_time(value: object) -> TypeGuard[int | float]:
    """A NumericDate (RFC 7519 §2): a number of seconds, and not a JSON `true` (which Python counts as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
