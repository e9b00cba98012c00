"""OpenID Connect id_token verification for declared providers: each issuer's key set kept, and the token checked by
the one id_token check (server/identity/id_token.py: signature, issuer, audience, expiry, authorized party, issue
time, the nonce sealed with the flow, a subject). A verified `sub` names the account.

    claims = await IdTokenVerifier(http).verify(connector, id_token, nonce=flow["nonce"])
"""

from __future__ import annotations

from typing import Any

import httpx2

from server.connectors import Connector
from server.identity.id_token import verify_id_token
from server.identity.jwt import JwksCache, JwtRejected


class IdTokenRejected(Exception):
    """The id_token failed a check. `reason` is the id_token check's code (`wrong_nonce`, …) or `no_jwks`, safe to
    log; the token itself never is."""

    def __init__(self, reason: str):
        super().__init__(f"id_token rejected: {reason}")
        self.reason = reason


class IdTokenVerifier:
    """Verifies id_tokens, keeping each issuer's key set (`JwksCache`: refreshed every few minutes, and re-read
    once when a token names a key it does not hold, as after the issuer rotated its keys)."""

    def __init__(self, http: httpx2.AsyncClient):
        self.http = http
        self._keys: dict[str, JwksCache] = {}

    async def verify(self, connector: Connector, id_token: str, *, nonce: str) -> dict[str, Any]:
        spec = connector.spec
        if not spec.jwks_uri or not spec.issuer:
            raise IdTokenRejected("no_jwks")
        keys = self._keys.get(spec.jwks_uri)
        if keys is None:
            keys = self._keys[spec.jwks_uri] = JwksCache(self.http, spec.jwks_uri)
        try:
            return await verify_id_token(id_token, keys, issuer=spec.issuer, client_id=connector.client_id or "", nonce=nonce)
        except JwtRejected as rejected:
            raise IdTokenRejected(rejected.reason) from None
