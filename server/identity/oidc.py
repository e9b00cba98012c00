"""The OpenID Connect relying party: discovery, the authorization URL (code + PKCE S256, `state`, `nonce`), the
code exchange through authlib, and the id_token checked by the one id_token check (id_token.py: the signature
against the provider's JWKS, issuer, audience, expiry, authorized party, nonce, subject), with RFC 9207's `iss` on
the authorization response checked when the provider offers it. A refused id_token fails the sign-in with
`id_token_<reason>`, the reason that check gave.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from server.identity.fetch import FetchError, fetch_json
from server.identity.id_token import verify_id_token
from server.identity.jwt import JwksCache, JwtRejected
from server.settings import Settings

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


class SignInFailed(Exception):
    """The sign-in did not prove who this is. `reason` is one word, safe for logs and pages."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AuthorizationStart:
    url: str
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)


class OidcClient:
    def __init__(self, settings: Settings, http: httpx2.AsyncClient):
        self.settings = settings
        self.http = http
        self.issuer = settings.oidc_issuer or ""
        self._metadata: dict[str, Any] | None = None
        self._jwks: JwksCache | None = None
        self._lock = anyio.Lock()

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None:
                try:
                    document = (await fetch_json(self.http, self.issuer.rstrip("/") + DISCOVERY_SUFFIX)).document
                except FetchError as exc:
                    raise SignInFailed("provider_unreachable") from exc
                # OIDC Discovery §4.3: the document must name exactly the issuer it was fetched for.
                if document.get("issuer") != self.issuer:
                    raise SignInFailed("provider_issuer_mismatch")
                for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(document.get(endpoint), str):
                        raise SignInFailed("provider_metadata_incomplete")
                self._metadata = document
                self._jwks = JwksCache(self.http, document["jwks_uri"])
            return self._metadata

    async def start(self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
        metadata = await self.metadata()
        return prepare_grant_uri(
            metadata["authorization_endpoint"],
            client_id=self.settings.oidc_client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self.settings.oidc_scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )

    async def finish(self, query: Mapping[str, str], *, redirect_uri: str, nonce: str, code_verifier: str) -> dict[str, Any]:
        """The verified id_token claims for the authorization response in `query`; `SignInFailed` otherwise."""
        metadata = await self.metadata()
        presented_iss = query.get("iss")
        if metadata.get("authorization_response_iss_parameter_supported") and presented_iss is None:
            raise SignInFailed("iss_missing")  # RFC 9207 §2.4: a mix-up attack would look like this
        if presented_iss is not None and presented_iss != self.issuer:
            raise SignInFailed("iss_mismatch")
        if query.get("error"):
            raise SignInFailed("access_denied" if query.get("error") == "access_denied" else "provider_error")
        code = query.get("code")
        if not code or len(code) > 2048:
            raise SignInFailed("code_missing")
        token = await self._exchange(metadata, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("id_token_missing")
        offered = metadata.get("id_token_signing_alg_values_supported")
        if not isinstance(offered, list) or not offered:
            offered = ["RS256"]  # OIDC Discovery §3: the field is required, and RS256 must be among its values
        assert self._jwks is not None
        try:
            claims = await verify_id_token(
                id_token,
                self._jwks,
                issuer=self.issuer,
                client_id=self.settings.oidc_client_id or "",
                nonce=nonce,
                algorithms=offered,  # narrows the allow-list, never widens it
            )
        except JwtRejected as exc:
            raise SignInFailed(f"id_token_{exc.reason}") from None
        return claims

    async def _exchange(self, metadata: dict[str, Any], *, code: str, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        client = AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id,
            client_secret=self.settings.oidc_client_secret,
            token_endpoint_auth_method=method,
            redirect_uri=redirect_uri,
            timeout=self.settings.refresh_timeout_seconds,
        )
        try:
            async with client:
                with anyio.fail_after(self.settings.refresh_timeout_seconds):
                    return dict(await client.fetch_token(metadata["token_endpoint"], code=code, code_verifier=code_verifier))
        except OAuthError:
            raise SignInFailed("code_rejected") from None
        except (httpx2.HTTPError, TimeoutError, ValueError):
            raise SignInFailed("provider_unreachable") from None
