"""Token-endpoint requests (refresh, authorization-code exchange) through authlib, with failures classified.

Each request has one total deadline (connect, send and every read together) and a bounded answer; the answer is
parsed here, not by authlib, so that no odd value in it (an absurd lifetime, a huge token) can raise after the
provider rotated: what it carries is either returned, clamped, or refused with `maybe_applied` said truly."""

from __future__ import annotations

import functools
import json
import math
import ssl
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from authlib.common.urls import url_decode
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2ClientAuth
from authlib.integrations.httpx_client.utils import build_request
from authlib.oauth2.client import DEFAULT_HEADERS
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from httpx2 import USE_CLIENT_DEFAULT

from providers.base import TokenVerdict, json_body
from server.bounded_read import BoundedTransport, ResponseTooLarge, UnsupportedEncoding
from server.connectors import Connector
from server.monitoring import tracing

# A token response is a few hundred bytes; the largest real ones (JWT access tokens with many claims) a few KiB.
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
# An access token travels in a header on every call; past this no API accepts it, so it is not a usable token.
MAX_ACCESS_TOKEN_CHARS = 16 * 1024
# Lifetimes beyond these are taken as these (an absurd `expires_in` such as 1e300 must not overflow a date).
MAX_ACCESS_LIFETIME_SECONDS = 366 * 24 * 3600
MAX_REFRESH_LIFETIME_SECONDS = 10 * 366 * 24 * 3600


@dataclass(frozen=True)
class TokenGrant:
    """A token endpoint's answer, parsed defensively, with the secrets kept out of repr.

    `defect` names what was wrong with an answer that must be stored anyway because it carries the grant's only
    live refresh token: `access_token_unusable` (access_token is then None) or `refresh_token_missing` (a rotating
    provider sent no successor, so the presented one is treated as spent: refresh_token is None)."""

    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    token_type: str
    expires_in: float | None
    refresh_expires_in: float | None
    scope: str | None
    provider_account_id: str | None
    identity: dict[str, Any]
    defect: str | None = None
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


class RawAnswerClient(AsyncOAuth2Client):
    """authlib prepares the request (client authentication, body); the answer comes back as the HTTP response,
    unparsed: authlib's own parsing raises on values such as `"expires_in": Infinity` after the provider rotated."""

    async def _fetch_token(self, url, body="", headers=None, auth=USE_CLIENT_DEFAULT, method="POST", **kwargs):
        return await self.post(url, data=dict(url_decode(body)), headers=headers, auth=auth, **kwargs)

    async def _refresh_token(self, url, refresh_token=None, body="", headers=None, auth=USE_CLIENT_DEFAULT, **kwargs):
        return await self.post(url, data=dict(url_decode(body)), headers=headers, auth=auth, **kwargs)


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


class JsonBodyOAuth2Client(RawAnswerClient):
    client_auth_class = JsonBodyClientAuth


def _client(connector: Connector, deadline: float, **kwargs: Any) -> AsyncOAuth2Client:
    client_class = JsonBodyOAuth2Client if connector.spec.token_body_encoding == "json" else RawAnswerClient
    key_auth = connector.spec.client_auth_method == "private_key_jwt"
    client = client_class(
        client_id=connector.client_id,
        # authlib's PrivateKeyJWT signs with the "client secret", which for this method is the private key.
        client_secret=connector.client_private_key if key_auth else connector.client_secret,
        token_endpoint_auth_method=connector.spec.client_auth_method,
        revocation_endpoint_auth_method=connector.spec.client_auth_method,  # RFC 7009 §2.1: as for tokens
        timeout=deadline,  # per phase; the whole request is bounded by `_answer`'s deadline
        transport=BoundedTransport(httpx2.AsyncHTTPTransport(verify=_tls_context()), MAX_TOKEN_RESPONSE_BYTES),
        **kwargs,
    )
    if key_auth:
        # RFC 7523 §3: the assertion's audience is the token endpoint; authlib adds a fresh jti and a short exp.
        client.register_client_auth_method(PrivateKeyJWT(connector.token_url))
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
    return httpx2.Response(response.status_code, json=normalised, headers={"Cache-Control": "no-store"}, request=response.request)


def _headers(connector: Connector) -> dict[str, str]:
    # identity: a compressed answer would have to be inflated (bounded, in BoundedTransport) to be read at all.
    return {**DEFAULT_HEADERS, "Accept-Encoding": "identity", **connector.spec.token_request_headers}


async def refresh_grant(connector: Connector, refresh_token: str, deadline: float) -> TokenGrant:
    """Present `refresh_token`; the whole exchange ends within `deadline` seconds, answered or not."""
    with tracing.span("token_request", connector=connector.name):
        async with _client(connector, deadline) as client:
            token = await _answer(
                connector,
                deadline,
                client.refresh_token(connector.refresh_url, refresh_token=refresh_token, headers=_headers(connector)),
            )
        return _grant(connector, token, presented_refresh_token=refresh_token)


def authorization_url(
    connector: Connector, *, redirect_uri: str, state: str, code_verifier: str, nonce: str | None = None
) -> str:
    """The provider's authorize URL for the authorization-code flow with PKCE (S256). For OpenID Connect it
    carries `openid`, the nonce, and — so that a refresh token is issued (OIDC Core §11) — `offline_access` with
    `prompt=consent` unless the declaration chose another prompt."""
    spec = connector.spec
    extra: dict[str, Any] = {
        **spec.authorize_params,
        "code_challenge": create_s256_code_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
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
    return prepare_grant_uri(
        connector.authorize_url,
        client_id=connector.client_id,
        response_type="code",
        redirect_uri=redirect_uri,
        state=state,
        **extra,
    )


async def exchange_code(connector: Connector, *, code: str, redirect_uri: str, code_verifier: str, timeout: float) -> TokenGrant:
    async with _client(connector, timeout, redirect_uri=redirect_uri) as client:
        token = await _answer(
            connector,
            timeout,
            client.fetch_token(connector.token_url, code=code, code_verifier=code_verifier, headers=_headers(connector)),
        )
    grant = _grant(connector, token, presented_refresh_token=None)
    if grant.defect is not None:
        # Nothing is lost by refusing it: the person simply follows a new link.
        raise TokenEndpointError(TokenVerdict.UNKNOWN, grant.defect, maybe_applied=False)
    return grant


async def _answer(connector: Connector, deadline: float, request: Any) -> dict[str, Any]:
    """The token endpoint's JSON object, or the TokenEndpointError that says what happened and whether the
    provider may have acted on the request anyway."""
    try:
        with anyio.fail_after(deadline):
            response: httpx2.Response = await request
    except TimeoutError:
        # Connect, send or a read that never finished: sent or not, it may have rotated.
        raise TokenEndpointError(TokenVerdict.TRANSIENT, "deadline_exceeded", maybe_applied=True) from None
    except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout):
        raise TokenEndpointError(TokenVerdict.TRANSIENT, "unreachable", maybe_applied=False) from None
    except httpx2.TransportError as exc:
        # Sent but unanswered: the provider may have rotated the refresh token and we never saw the new one.
        raise TokenEndpointError(TokenVerdict.TRANSIENT, type(exc).__name__, maybe_applied=True) from None
    except ResponseTooLarge:
        raise TokenEndpointError(TokenVerdict.UNKNOWN, "response_too_large", maybe_applied=True) from None
    except UnsupportedEncoding:
        raise TokenEndpointError(TokenVerdict.UNKNOWN, "unsupported_encoding", maybe_applied=True) from None
    except httpx2.DecodingError:
        raise TokenEndpointError(TokenVerdict.UNKNOWN, "malformed_response", maybe_applied=True) from None
    status = response.status_code
    if status >= 500 or status == 429:
        # A 5xx may come after the provider rotated (a gateway timing out on a slow backend): the refresh token
        # may be spent, so a later refusal of it is an interrupted refresh, not a revocation.
        raise TokenEndpointError(TokenVerdict.TRANSIENT, f"http_{status}", maybe_applied=status >= 500, http_status=status)
    try:
        response = _normalised_error(connector, response)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        pass  # an odd error shape stays as it came: read below like any other answer
    token = _json_object(response.content)
    if token is not None and token.get("error"):
        error = str(token["error"])[:64]
        description = token.get("error_description") if isinstance(token.get("error_description"), str) else None
        verdict = connector.provider.classify_token_response(error, description, None)
        raise TokenEndpointError(verdict, error, maybe_applied=False)
    if status >= 400:
        raise TokenEndpointError(TokenVerdict.UNKNOWN, f"http_{status}", maybe_applied=False, http_status=status)
    if token is None:
        raise TokenEndpointError(TokenVerdict.UNKNOWN, "malformed_response", maybe_applied=True)
    return token


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        # Integers too long for int() (Python refuses more than 4300 digits) are read as floats, then clamped.
        value = json.loads(body, parse_int=lambda digits: int(digits) if len(digits) < 40 else float(digits))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _grant(connector: Connector, token: dict[str, Any], presented_refresh_token: str | None) -> TokenGrant:
    """What the answer carries, clamped. A refresh answer is refused only when it holds nothing worth keeping;
    one that holds a new refresh token is returned (with `defect` set) so that it is stored, whatever else is wrong."""
    rotating = connector.spec.rotates_refresh_token
    access_token = _usable_access_token(token.get("access_token"))
    new_refresh = token.get("refresh_token")
    new_refresh = new_refresh if isinstance(new_refresh, str) and new_refresh else None
    defect = None
    if presented_refresh_token is None:  # a code exchange: no refresh token is fine (providers without them)
        refresh_token = new_refresh
    elif new_refresh is not None or not rotating:
        refresh_token = new_refresh or presented_refresh_token  # RFC 6749 §6: no new one, the old one stays
    else:
        # A rotating provider answered without a successor: the presented token is spent, keep nothing to present.
        refresh_token, defect = None, "refresh_token_missing"
    if access_token is None:
        if presented_refresh_token is None or new_refresh is None:
            # Nothing worth storing: it may still have rotated (a rotating provider) and that is what we say.
            raise TokenEndpointError(
                TokenVerdict.UNKNOWN, "access_token_unusable", maybe_applied=rotating and presented_refresh_token is not None
            )
        defect = "access_token_unusable"
    try:
        account_id, identity = connector.provider.identity_from_token_response(token)
    except (TypeError, ValueError, KeyError, AttributeError):
        if presented_refresh_token is None:
            raise TokenEndpointError(TokenVerdict.UNKNOWN, "malformed_response", maybe_applied=False) from None
        account_id, identity = None, {}  # a refresh does not need it, and must not lose the answer over it
    token_type = token.get("token_type")
    scope = token.get("scope")
    id_token = token.get("id_token")
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token,
        token_type=token_type if isinstance(token_type, str) and 0 < len(token_type) <= 40 else "bearer",
        expires_in=lifetime(token.get("expires_in"), MAX_ACCESS_LIFETIME_SECONDS),
        refresh_expires_in=lifetime(token.get("refresh_token_expires_in"), MAX_REFRESH_LIFETIME_SECONDS),
        scope=scope if isinstance(scope, str) and len(scope) <= 4096 else None,
        provider_account_id=account_id,
        identity=identity,
        defect=defect,
        id_token=id_token if isinstance(id_token, str) else None,
    )


def _usable_access_token(value: Any) -> str | None:
    """A token that can go in an Authorization header: visible ASCII, not absurdly long."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ACCESS_TOKEN_CHARS:
        return None
    return value if all("!" <= char <= "~" for char in value) else None


def lifetime(value: Any, longest: float) -> float | None:
    """A lifetime in seconds from a token answer: a positive finite number (or numeric string), at most `longest`.
    Anything else (absent, negative, zero, NaN, Infinity, text, a boolean) is unknown: None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, longest)


async def revoke_grant(connector: Connector, token: str, *, token_type_hint: str = "refresh_token", timeout: float) -> bool:
    """RFC 7009 revocation at the connector's revocation endpoint (declared or discovered), authenticated like a
    token request, within one total deadline. True when the server accepted it (§2.2: 200, whatever the token
    was). For offboarding."""
    if connector.revoke_url is None:
        raise ValueError(f"{connector.spec.display_name} has no revocation endpoint")
    try:
        async with _client(connector, timeout) as client:
            with anyio.fail_after(timeout):
                response = await client.revoke_token(
                    connector.revoke_url, token=token, token_type_hint=token_type_hint, headers=_headers(connector)
                )
    except (httpx2.HTTPError, TimeoutError, ResponseTooLarge, UnsupportedEncoding):
        return False
    return response.status_code == 200
