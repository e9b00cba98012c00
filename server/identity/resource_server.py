"""Resource-server-only mode: the organisation's own authorization server issues JWT access tokens for this MCP
server. Each is checked against that issuer's JWKS — issuer, audience (this server's MCP URL), expiry,
not-before, an allow-list of algorithms that never holds `none` — and mapped to org/user like an id_token."""

from __future__ import annotations

import httpx2
from mcp.server.auth.provider import AccessToken

from server.identity.fetch import FetchError, fetch_json
from server.identity.jwt import JwksCache, JwtRejected, verify_jwt
from server.identity.people import SignInRefused, person_from_claims
from server.monitoring.logging import get_logger
from server.settings import Settings

TOOLS_SCOPE = "tools"


class ExternalTokenVerifier:
    def __init__(self, settings: Settings, http: httpx2.AsyncClient, resource: str):
        self.settings = settings
        self.http = http
        self.resource = resource
        self.issuer = settings.mcp_external_issuer or ""
        self.algorithms = [
            alg.strip() for alg in settings.mcp_external_algorithms.split(",") if alg.strip() and alg.strip().lower() != "none"
        ]
        self._keys: JwksCache | None = None
        self.log = get_logger("grantkeeper.resource_server")
        self.rejections: dict[str, int] = {}

    async def _jwks(self) -> JwksCache:
        if self._keys is None:
            url = self.settings.mcp_external_jwks_url
            if url is None:
                try:
                    document = (await fetch_json(self.http, _metadata_url(self.issuer))).document
                except FetchError as exc:
                    raise JwtRejected("issuer_unreachable") from exc
                if document.get("issuer") != self.issuer or not isinstance(document.get("jwks_uri"), str):
                    raise JwtRejected("issuer_metadata_mismatch")
                url = document["jwks_uri"]
            self._keys = JwksCache(self.http, url)
        return self._keys

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = await verify_jwt(
                token, await self._jwks(), issuer=self.issuer, audience=self.resource, algorithms=self.algorithms
            )
            person = person_from_claims(claims, self.settings)
        except JwtRejected as rejected:
            self.rejections[rejected.reason] = self.rejections.get(rejected.reason, 0) + 1
            self.log.info("external_token_rejected", reason=rejected.reason)
            return None
        except SignInRefused as refused:
            self.log.info("external_token_refused", reason=refused.reason)
            return None
        scopes = claims.get("scope", "")
        granted = scopes.split() if isinstance(scopes, str) else []
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or "external"),
            scopes=[TOOLS_SCOPE] if TOOLS_SCOPE in granted or not granted else granted,
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=f"{person.org}/{person.user}",
            claims={"org": person.org, "user": person.user, "iss": self.issuer},
        )


def _metadata_url(issuer: str) -> str:
    # OpenID discovery first: every IdP in docs/remote-hosts.md serves it; RFC 8414's path form differs per vendor.
    return issuer.rstrip("/") + "/.well-known/openid-configuration"
