"""The one check of an OpenID Connect id_token (OIDC Core §3.1.3.7), for both relying parties grantkeeper is: the
sign-in of people through the operator's IdP (server/identity/oidc.py) and a declared provider's connect
(server/lifecycle/oidc.py). The signature and RFC 7519's claims go through the JWT verifier (jwt.py); then what
OIDC adds, each refusal a `JwtRejected` with one reason from the same vocabulary as the verifier's:

- `wrong_authorized_party`: several audiences and `azp` is not this client;
- `issued_in_future`: `iat` later than now (beyond the clock leeway);
- `wrong_nonce`: no `nonce`, or not the one this flow generated (a replayed or another flow's token);
- `no_subject`: no `sub`, or not a string of 1 to 255 characters.

    claims = await verify_id_token(token, keys, issuer=..., client_id=..., nonce=flow_nonce)
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Collection
from typing import Any

from server.identity.jwt import CLOCK_LEEWAY_SECONDS, JwksCache, JwtRejected, check_claims, verify_signature

# Asymmetric algorithms only: `none` never, and not HMAC, whose key would be the client secret (held by the provider
# and by us, so proving nothing about who signed) or, for a public client, a value anyone could read.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_SUBJECT_LENGTH = 255  # OIDC Core §2: "MUST NOT exceed 255 ASCII characters"


async def verify_id_token(
    token: str,
    keys: JwksCache,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: Collection[str] = ID_TOKEN_ALGORITHMS,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The verified claims of `token` (its `sub` a usable string), or `JwtRejected`. `algorithms` may narrow
    ID_TOKEN_ALGORITHMS (to what the provider says it signs with), never widen it."""
    allowed = [alg for alg in algorithms if alg in ID_TOKEN_ALGORITHMS]
    claims = await verify_signature(token, keys, algorithms=allowed)
    check_id_token(claims, issuer=issuer, client_id=client_id, nonce=nonce, now=now())
    return claims


def check_id_token(claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str, now: float) -> None:
    """The claims of a signature-checked id_token, or `JwtRejected`: `iss`, `aud`, `exp`, `nbf` as for any JWT,
    then `azp`, `iat`, `nonce` and `sub` as OIDC asks."""
    check_claims(claims, issuer=issuer, audience=client_id, now=now)
    audience = claims.get("aud")
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise JwtRejected("wrong_authorized_party")
    issued = claims.get("iat")
    if isinstance(issued, int | float) and not isinstance(issued, bool) and issued > now + CLOCK_LEEWAY_SECONDS:
        raise JwtRejected("issued_in_future")
    # Always required: the flow generated one, so a token without it (or a flow without one) is not this flow's.
    presented = claims.get("nonce")
    if not nonce or not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), nonce.encode()):
        raise JwtRejected("wrong_nonce")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise JwtRejected("no_subject")
