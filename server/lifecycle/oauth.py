"""Token-endpoint requests (refresh, authorization-code exchange) through authlib, with failures classified."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx2
from authlib.common.urls import url_decode
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2ClientAuth
from authlib.integrations.httpx_client.utils import build_request
from authlib.oauth2.client import DEFAULT_HEADERS
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from providers.base import TokenVerdict, json_body
from server.connectors import Connector
from server.monitoring import tracing


@dataclass(frozen=True)
class TokenGrant:
    """A token endpoint's successful answer, with the secrets kept out of repr."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    token_type: str
    expires_in: float | None
    refresh_expires_in: float | None
    scope: str | None
    provider_account_id: str | None
    identity: dict[str, Any]
    id_token: str | None = field(default=None, repr=False)  # OpenID Connect; verified by the caller


class TokenEndpointError(Exception):
    """The token endpoint said no, or could not be reached. `maybe_applied`: it may have rotated anyway."""

    def __init__(self, verdict: TokenVerdict, error: str, *, maybe_applied: bool, http_status: int | None = None):
        super().__init__(f"token endpoint: {error} ({verdict.value})")
        self.verdict = verdict
        self.error = error
        self.maybe_applied = maybe_applied
        self.http_status = http_status


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every token request. Building one loads the CA bundle: ~20 ms of CPU on the event
    loop, which per refresh was most of the cost of a scheduler pass (see docs/benchmarks.md)."""
    return httpx2.create_ssl_context()


class JsonBodyClientAuth(OAuth2ClientAuth):
    """authlib's client authentication, then the finished form body re-encoded as a JSON object: the same
    parameters (client credentials included for client_secret_post) for token endpoints that only read JSON."""

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        url, headers, body = self.prepare(request.method, str(request.url), request.headers, request.content)
        form = body.decode() if isinstance(body, bytes) else body or ""
        payload = json.dumps(dict(url_decode(form))).encode()
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(payload))
        yield build_request(url=url, headers=headers, body=payload, initial_request=request)


class JsonBodyOAuth2Client(AsyncOAuth2Client):
    client_auth_class = JsonBodyClientAuth


def _client(connector: Connector, timeout: float, **kwargs: Any) -> AsyncOAuth2Client:
    client_class = JsonBodyOAuth2Client if connector.spec.token_body_encoding == "json" else AsyncOAuth2Client
    key_auth = connector.spec.client_auth_method == "private_key_jwt"
    client = client_class(
        client_id=connector.client_id,
        # authlib's PrivateKeyJWT signs with the "client secret", which for this method is the private key.
        client_secret=connector.client_private_key if key_auth else connector.client_secret,
        token_endpoint_auth_method=connector.spec.client_auth_method,
        revocation_endpoint_auth_method=connector.spec.client_auth_method,  # RFC 7009 §2.1: as for tokens
        timeout=timeout,
        verify=_tls_context(),
        **kwargs,
    )
    if key_auth:
        # RFC 7523 §3: the assertion's audience is the token endpoint; authlib adds a fresh jti and a short exp.
        client.register_client_auth_method(PrivateKeyJWT(connector.token_url))
    hook = functools.partial(_normalised_error, connector)
    client.register_compliance_hook("access_token_response", hook)
    client.register_compliance_hook("refresh_token_response", hook)
    return client


def _normalised_error(connector: Connector, response: httpx2.Response) -> httpx2.Response:
    """A token-endpoint error as RFC 6749 §5.2 spells it (`error`, `error_description`), whatever shape the
    provider used: nested (`{"error": {"code": …}}`), listed, or only a description."""
    if response.status_code >= 500:
        return response
    body = json_body(response)
    if not isinstance(body, dict) or ("access_token" in body and "error" not in body):
        return response
    if isinstance(body.get("error"), str) and body["error"]:
        return response
    if response.status_code < 400 and "error" not in body:
        return response
    code, description = connector.provider.token_error_code(body)
    if code is None:
        return response
    normalised = {"error": code, **({"error_description": description} if description else {})}
    return httpx2.Response(response.status_code, json=normalised, headers={"Cache-Control": "no-store"},
                           request=response.request)


def _headers(connector: Connector) -> dict[str, str]:
    return {**DEFAULT_HEADERS, **connector.spec.token_request_headers}


async def refresh_grant(connector: Connector, refresh_token: str, timeout: float) -> TokenGrant:
    with tracing.span("token_request", connector=connector.name):
        async with _client(connector, timeout) as client:
            token = await _call(connector, client.refresh_token(connector.refresh_url, refresh_token=refresh_token,
                                                                headers=_headers(connector)))
        return _grant(connector, token, fallback_refresh_token=refresh_token)


def authorization_url(connector: Connector, *, redirect_uri: str, state: str, code_verifier: str,
                      nonce: str | None = None) -> str:
    """The provider's authorize URL for the authorization-code flow with PKCE (S256). For OpenID Connect it
    carries `openid`, the nonce, and — so that a refresh token is issued (OIDC Core §11) — `offline_access` with
    `prompt=consent` unless the declaration chose another prompt."""
    spec = connector.spec
    extra: dict[str, Any] = {**spec.authorize_params, "code_challenge": create_s256_code_challenge(code_verifier),
                             "code_challenge_method": "S256"}
    scopes = list(spec.scopes)
    if spec.openid:
        scopes = ["openid", *(s for s in scopes if s != "openid")]
        if nonce is not None:
            extra["nonce"] = nonce
    if spec.request_offline_access:
        if "offline_access" not in scopes:
            scopes.append("offline_access")
        extra.setdefault("prompt", "consent")
    if scopes:
        extra["scope"] = spec.scope_separator.join(scopes)
    return prepare_grant_uri(connector.authorize_url, client_id=connector.client_id, response_type="code",
                             redirect_uri=redirect_uri, state=state, **extra)


async def exchange_code(
    connector: Connector, *, code: str, redirect_uri: str, code_verifier: str, timeout: float
) -> TokenGrant:
    async with _client(connector, timeout, redirect_uri=redirect_uri) as client:
        token = await _call(connector, client.fetch_token(connector.token_url, code=code, code_verifier=code_verifier,
                                                          headers=_headers(connector)))
    return _grant(connector, token, fallback_refresh_token=None)


async def _call(connector: Connector, request: Any) -> dict[str, Any]:
    try:
        return dict(await request)
    except OAuthError as exc:
        error = str(exc.error or "unknown_error")[:64]
        description = exc.description if isinstance(exc.description, str) else None
        verdict = connector.provider.classify_token_response(error, description, None)
        raise TokenEndpointError(verdict, error, maybe_applied=False) from None
    except httpx2.HTTPStatusError as exc:
        status = exc.response.status_code
        verdict = TokenVerdict.TRANSIENT if status >= 500 or status == 429 else TokenVerdict.UNKNOWN
        # A 5xx may come after the provider rotated (a gateway timing out on a slow backend): the refresh token
        # may be spent, so a later refusal of it is an interrupted refresh, not a revocation.
        raise TokenEndpointError(verdict, f"http_{status}", maybe_applied=status >= 500, http_status=status) from None
    except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout):
        raise TokenEndpointError(TokenVerdict.TRANSIENT, "unreachable", maybe_applied=False) from None
    except httpx2.TransportError as exc:
        # Sent but unanswered: the provider may have rotated the refresh token and we never saw the new one.
        raise TokenEndpointError(TokenVerdict.TRANSIENT, type(exc).__name__, maybe_applied=True) from None
    except ValueError:
        raise TokenEndpointError(TokenVerdict.UNKNOWN, "malformed_response", maybe_applied=True) from None


def _grant(connector: Connector, token: dict[str, Any], fallback_refresh_token: str | None) -> TokenGrant:
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenEndpointError(TokenVerdict.UNKNOWN, "no_access_token", maybe_applied=True)
    account_id, identity = connector.provider.identity_from_token_response(token)
    id_token = token.get("id_token") if isinstance(token.get("id_token"), str) else None
    # Providers that do not rotate (Google) send no refresh token: the old one stays valid.
    refresh_token = token.get("refresh_token") or fallback_refresh_token
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token,
        token_type=str(token.get("token_type") or "bearer"),
        expires_in=_number(token.get("expires_in")),
        refresh_expires_in=_number(token.get("refresh_token_expires_in")),
        scope=token.get("scope") if isinstance(token.get("scope"), str) else None,
        provider_account_id=account_id,
        identity=identity,
        id_token=id_token,
    )


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


async def revoke_grant(connector: Connector, token: str, *, token_type_hint: str = "refresh_token",
                       timeout: float) -> bool:
    """RFC 7009 revocation at the connector's revocation endpoint (declared or discovered), authenticated like a
    token request. True when the server accepted it (§2.2: 200, whatever the token was). For offboarding."""
    if connector.revoke_url is None:
        raise ValueError(f"{connector.spec.display_name} has no revocation endpoint")
    try:
        async with _client(connector, timeout) as client:
            response = await client.revoke_token(connector.revoke_url, token=token, token_type_hint=token_type_hint,
                                                 headers=_headers(connector))
    except httpx2.HTTPError:
        return False
    return response.status_code == 200
