"""A standards-following OAuth 2.0 provider with a small JSON API, for declared (custom) providers.

- RFC 6749 token endpoint: client authentication by HTTP Basic or in the body (either may be switched off),
  `invalid_client` 401 (with `WWW-Authenticate: Basic` when Basic was tried), `invalid_grant` 400,
  `Cache-Control: no-store`; refresh-token rotation and RFC 9700 reuse detection, each switchable.
- RFC 7009 revocation at `/oauth/revoke` (200 even for unknown tokens; revoking one token ends its grant).
- RFC 8414 metadata at `/.well-known/oauth-authorization-server`.
- RFC 6750 errors on the API: 401 `WWW-Authenticate: Bearer error="invalid_token"`, 403 `insufficient_scope`;
  429 with Retry-After when rate limited.
- API: `GET /api/me`, `GET /api/projects`, `POST /api/projects` (honours `Idempotency-Key`),
  `GET|DELETE /api/projects/{project_id}`.

Departures from the RFCs, for testing a declared error vocabulary: `refresh_error` changes the code (and status)
of a refused refresh (`refresh_error_body` its whole body: nested codes, description-only), `expired_token_response`
replaces the RFC 6750 answer to an expired access token.

OpenID Connect mode (`oidc=True`), what a declared OIDC provider needs from a stock server:
- `/.well-known/openid-configuration` (and the RFC 8414 document) with `jwks_uri` and
  `authorization_response_iss_parameter_supported`; RS256 id_tokens (iss, sub, aud, exp, iat, nonce) whose key is
  published at `/oauth/jwks`.
- The stock refresh-token policy (OIDC Core §11): a refresh token only for `offline_access` requested with
  `prompt=consent`; `refresh_tokens="never"` (or the `refresh_tokens` fault) refuses them altogether.
- RFC 9207 `iss` in every authorization response.
- `private_key_jwt` client authentication (RFC 7523 §2.2) against a registered public key.
- Faults to forge what a client must refuse: `id_token` (wrong_issuer, wrong_audience, wrong_authorized_party,
  bad_signature, expired, wrong_nonce, no_nonce, no_subject, unsigned, garbage) and `rewrite_iss`.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .base import FaultError, ProviderSimulator, basic_credentials, read_params
from .faults import RateLimitFault
from .grants import Grant, GrantFailure, GrantResult, GrantStore, TokenCheck, TokenPolicy, TokenStatus
from .oidc import kid_of

DEFAULT_OAUTH2_IDENTITY = {"sub": "user-1", "name": "Ada Lovelace"}
DEFAULT_OAUTH2_SCOPES = ["projects:read", "projects:write"]
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
KEY_AUTH_METHOD = "private_key_jwt"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
METADATA_PATH = "/.well-known/oauth-authorization-server"
OIDC_METADATA_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/oauth/jwks"
ID_TOKEN_FAULTS = (
    "wrong_issuer",
    "wrong_audience",
    "wrong_authorized_party",
    "bad_signature",
    "expired",
    "wrong_nonce",
    "no_nonce",
    "no_subject",
    "unsigned",
    "garbage",
)
JWKS_FAULTS = ("huge", "malformed", "error")
RefreshTokenPolicy = Literal["always", "offline_consent", "never"]
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(error: str, description: str, status: int = 400, headers: dict[str, str] | None = None) -> JSONResponse:
    """RFC 6749 §5.2 error response."""
    return JSONResponse({"error": error, "error_description": description}, status, headers={**_NO_STORE, **(headers or {})})


@dataclass
class RotationSwitchStore(GrantStore):
    """The shared GrantStore, with rotation switchable: without it a refresh mints a new access token and the
    presented refresh token stays valid (Google's behaviour)."""

    rotate: bool = True

    def _refresh_locked(self, refresh_token: str | None) -> GrantResult:
        result = super()._refresh_locked(refresh_token)
        if self.rotate or result.tokens is None or refresh_token is None:
            return result
        self._refresh.pop(result.tokens.refresh_token, None)
        self._refresh[refresh_token].used = False
        return GrantResult(tokens=replace(result.tokens, refresh_token=refresh_token))


class OAuth2Simulator(ProviderSimulator):
    grants: RotationSwitchStore
    token_path = "/oauth/token"
    authorize_path = "/oauth/authorize"
    revocation_path = "/oauth/revoke"
    identity_fields = (("sub", "Subject"), ("name", "Name"))

    def __init__(
        self,
        *,
        title: str = "Acme",
        client_id: str = "sim-oauth2-client",
        client_secret: str = "sim-oauth2-secret",
        app_name: str = "Grantkeeper Sim",
        default_identity: dict[str, Any] | None = None,
        default_scopes: list[str] | None = None,
        access_ttl: int | None = 3600,
        refresh_ttl: int | None = None,
        rotation: bool = True,
        reuse_detection: bool = True,
        auth_methods: tuple[str, ...] = AUTH_METHODS,
        issuer: str | None = None,
        metadata: bool = True,
        refresh_error: tuple[str, int] = ("invalid_grant", 400),
        refresh_error_body: dict[str, Any] | None = None,
        expired_token_response: tuple[int, dict[str, Any]] | None = None,
        oidc: bool = False,
        refresh_tokens: RefreshTokenPolicy | None = None,
        iss_parameter: bool | None = None,
        client_public_key: dict[str, Any] | None = None,
        probe_route: tuple[str, str, str] | None = None,
    ) -> None:
        unknown = set(auth_methods) - {*AUTH_METHODS, KEY_AUTH_METHOD}
        if unknown or not auth_methods:
            raise ValueError(f"auth_methods must be a non-empty subset of {(*AUTH_METHODS, KEY_AUTH_METHOD)}")
        if KEY_AUTH_METHOD in auth_methods and client_public_key is None:
            raise ValueError("private_key_jwt needs the client's public key (client_public_key, a JWK)")
        self.oidc = oidc
        # Stock OIDC (§11) issues refresh tokens only for offline_access with prompt=consent; plain OAuth always.
        self.refresh_tokens: RefreshTokenPolicy = refresh_tokens or ("offline_consent" if oidc else "always")
        self.iss_parameter = oidc if iss_parameter is None else iss_parameter
        self.client_public_key = RSAKey.import_key(client_public_key) if client_public_key else None
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": "sim-1", "use": "sig", "alg": "RS256"}) if oidc else None
        self.id_token_fault: str | None = None
        self.jwks_fault: str | None = None
        self._key_generation = 1
        self.rewrite_iss: str | None = None
        self.refresh_error_body = refresh_error_body
        # (method, path, dotted field): one more identity endpoint, shaped like a real provider's "who am I"
        # (Notion's GET /v1/users/me, Linear's POST /graphql …), for declarations from the catalog.
        self.probe_route = probe_route
        # Authorization requests by code (nonce, scope, prompt), for the id_token and the refresh-token policy.
        self._code_requests: dict[str, dict[str, str]] = {}
        self._assertion_ids: set[str] = set()
        self.provider_title = title
        self.auth_methods = tuple(auth_methods)
        self.issuer = issuer  # None: the URL the simulator is reached at
        self.metadata_enabled = metadata
        self.refresh_error = refresh_error
        self.expired_token_response = expired_token_response
        # (method, raw path and query) of every request, to prove where calls went.
        self.requests: list[tuple[str, str]] = []
        self._requests_lock = threading.Lock()
        self._projects: dict[str, dict[str, Any]] = {}
        self.json_bodies: list[Any] = []  # what each POST /api/projects carried, to prove what was sent
        self._idempotent_replies: dict[str, tuple[int, dict[str, Any]]] = {}
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            app_name=app_name,
            default_identity=default_identity or DEFAULT_OAUTH2_IDENTITY,
            default_scopes=default_scopes if default_scopes is not None else DEFAULT_OAUTH2_SCOPES,
            policy=TokenPolicy(
                access_prefix="at_",
                refresh_prefix="rt_",
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
                rotation_kills_access_token=rotation,
            ),
            reuse_detection=reuse_detection,
        )
        self.grants = RotationSwitchStore(self.grants.policy, self.counters, reuse_detection=reuse_detection, rotate=rotation)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            target = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            with self._requests_lock:
                self.requests.append((scope["method"], target))
        await super().__call__(scope, receive, send)

    def requested_paths(self) -> list[str]:
        with self._requests_lock:
            return [path for _, path in self.requests]

    # -- switches -----------------------------------------------------------

    def set_rotation(self, enabled: bool) -> None:
        self.grants.rotate = enabled

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "rotation": self.grants.rotate}

    def extra_faults(self) -> dict[str, Any]:
        def expired_response(status: int | None = None, body: dict[str, Any] | None = None) -> None:
            if (status is None) != (body is None):
                raise FaultError("give both status and body, or neither (back to RFC 6750)")
            self.expired_token_response = None if status is None else (int(status), dict(body or {}))

        def refresh_error(error: str = "invalid_grant", status: int = 400, body: dict[str, Any] | None = None) -> None:
            self.refresh_error = (str(error), int(status))
            self.refresh_error_body = dict(body) if body is not None else None

        def id_token(kind: str | None = None) -> None:
            if kind is not None and kind not in ID_TOKEN_FAULTS:
                raise FaultError(f"id_token fault must be one of {', '.join(ID_TOKEN_FAULTS)}")
            self.id_token_fault = kind

        def jwks(kind: str | None = None) -> None:
            if kind is not None and kind not in JWKS_FAULTS:
                raise FaultError(f"jwks fault must be one of {', '.join(JWKS_FAULTS)}")
            self.jwks_fault = kind

        def refresh_tokens(policy: str) -> None:
            if policy not in ("always", "offline_consent", "never"):
                raise FaultError("refresh_tokens must be always, offline_consent or never")
            self.refresh_tokens = policy  # type: ignore[assignment]

        return {
            "id_token": id_token,
            "jwks": jwks,
            "rewrite_iss": lambda issuer=None: setattr(self, "rewrite_iss", issuer),
            "refresh_tokens": refresh_tokens,
            "rotation": lambda enabled: self.set_rotation(bool(enabled)),
            "expired_response": expired_response,
            "refresh_error": refresh_error,
        }

    # -- OAuth ----------------------------------------------------------------

    def issuer_for(self, request: Request) -> str:
        return self.issuer or str(request.base_url).rstrip("/")

    def _oauth_routes(self) -> list[BaseRoute]:
        return [
            *super()._oauth_routes(),
            Route(self.revocation_path, self._revoke, methods=["POST"]),
            Route(METADATA_PATH, self._metadata, methods=["GET"]),
            Route(OIDC_METADATA_PATH, self._metadata, methods=["GET"]),
            Route(JWKS_PATH, self._jwks, methods=["GET"]),
        ]

    async def _jwks(self, request: Request) -> Response:
        self.counters.hit("jwks")
        if self.signing_key is None or self.jwks_fault == "error":
            return JSONResponse({"error": "not_found"}, 404 if self.signing_key is None else 500)
        if self.jwks_fault == "malformed":
            return Response("<html>not a key set</html>", media_type="text/html")
        keys = [self.signing_key.as_dict(private=False)]
        if self.jwks_fault == "huge":  # a key set far beyond any real one
            keys += [{"kty": "oct", "kid": f"pad-{i}", "k": "A" * 1000} for i in range(400)]
        return JSONResponse({"keys": keys})

    async def _metadata(self, request: Request) -> Response:
        self.counters.hit("metadata")
        if not self.metadata_enabled or (request.url.path == OIDC_METADATA_PATH and not self.oidc):
            return JSONResponse({"error": "not_found"}, 404)
        base = str(request.base_url).rstrip("/")
        oidc: dict[str, Any] = {}
        if self.oidc:
            oidc = {
                "jwks_uri": base + JWKS_PATH,
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "offline_access", *self.default_scopes],
            }
        if self.iss_parameter:
            oidc["authorization_response_iss_parameter_supported"] = True
        return JSONResponse(
            {
                **oidc,
                "issuer": self.issuer_for(request),
                "authorization_endpoint": base + self.authorize_path,
                "token_endpoint": base + self.token_path,
                "revocation_endpoint": base + self.revocation_path,
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": list(self.auth_methods),
                "revocation_endpoint_auth_methods_supported": list(self.auth_methods),
                "code_challenge_methods_supported": ["S256"],
                **({} if self.oidc else {"scopes_supported": self.default_scopes}),
            }
        )

    def _client(self, request: Request, params: dict[str, str]) -> tuple[str | None, Response | None]:
        """RFC 6749 §2.3.1: the authenticated client id, or the error to answer with."""
        basic = basic_credentials(request)
        in_body = params.get("client_secret") is not None
        if params.get("client_assertion_type") is not None or params.get("client_assertion") is not None:
            if basic is not None or in_body:
                return None, oauth_error("invalid_request", "Use one client authentication method, not two.")
            return self._client_from_assertion(request, params)
        if basic is not None and in_body:
            return None, oauth_error("invalid_request", "Use one client authentication method, not two.")
        client_id: str | None
        secret: str | None
        if basic is not None and "client_secret_basic" in self.auth_methods:
            client_id, secret = basic
        elif in_body and "client_secret_post" in self.auth_methods:
            client_id, secret = params.get("client_id"), params.get("client_secret")
        else:
            client_id = secret = None
        if self.client_authenticated(client_id, secret):
            return client_id, None
        challenge = {"WWW-Authenticate": 'Basic realm="oauth2-sim"'} if basic is not None else None
        return None, oauth_error("invalid_client", "Client authentication failed.", 401, challenge)

    def _client_from_assertion(self, request: Request, params: dict[str, str]) -> tuple[str | None, Response | None]:
        """RFC 7523 §3: a JWT signed with the client's registered key; iss and sub the client id, aud this token
        endpoint (or the issuer), not expired, and each jti used once."""
        refused = oauth_error("invalid_client", "Client authentication failed.", 401)
        if (
            KEY_AUTH_METHOD not in self.auth_methods
            or self.client_public_key is None
            or params.get("client_assertion_type") != ASSERTION_TYPE
        ):
            return None, refused
        try:
            token = jwt.decode(
                params.get("client_assertion", ""), self.client_public_key, algorithms=["RS256", "RS384", "RS512", "PS256"]
            )
        except (JoseError, ValueError):
            return None, refused
        claims = token.claims
        endpoint = str(request.url.replace(query=""))
        audience = claims.get("aud")
        audiences: list[object] = audience if isinstance(audience, list) else [audience]
        now = self.grants.now()
        jti = claims.get("jti")
        if (
            claims.get("iss") != self.client_id
            or claims.get("sub") != self.client_id
            or not ({endpoint, self.issuer_for(request)} & set(audiences))
            or not isinstance(claims.get("exp"), int | float)
            or claims["exp"] <= now
            or not isinstance(jti, str)
            or not jti
            or jti in self._assertion_ids
            or params.get("client_id", self.client_id) != self.client_id
        ):
            return None, refused
        with self._requests_lock:
            self._assertion_ids.add(jti)
        self.counters.hit("client_assertion_ok")
        return self.client_id, None

    def rotate_signing_key(self) -> None:
        """Sign id_tokens with a new key under a new kid from now on (the old one leaves the key set)."""
        with self._data_lock:
            self._key_generation += 1
            self.signing_key = RSAKey.generate_key(
                2048, parameters={"kid": f"sim-{self._key_generation}", "use": "sig", "alg": "RS256"}
            )

    def authorization_granted(self, code: str, params: dict[str, str]) -> None:
        with self._data_lock:
            self._code_requests[code] = {key: params.get(key, "") for key in ("nonce", "scope", "prompt")}

    async def _authorize(self, request: Request) -> Response:
        """The consent page, with RFC 9207's `iss` added to every answer when the server advertises it."""
        response = await super()._authorize(request)
        location = response.headers.get("location")
        if response.status_code != 302 or location is None or not self.iss_parameter:
            return response
        parts = urlsplit(location)
        query = [*parse_qsl(parts.query, keep_blank_values=True), ("iss", self.rewrite_iss or self.issuer_for(request))]
        response.headers["location"] = urlunsplit(parts._replace(query=urlencode(query)))
        return response

    def _issues_refresh_token(self, request_params: dict[str, str]) -> bool:
        if self.refresh_tokens == "never":
            return False
        if self.refresh_tokens == "offline_consent":
            return (
                "offline_access" in request_params.get("scope", "").split()
                and "consent" in request_params.get("prompt", "").split()
            )
        return True

    def _id_token(self, request: Request, tokens: Any, request_params: dict[str, str]) -> str:
        assert self.signing_key is not None
        now = int(self.grants.now())
        claims: dict[str, Any] = {
            "iss": self.issuer_for(request),
            "sub": str(tokens.identity.get("sub")),
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "name": tokens.identity.get("name"),
        }
        if request_params.get("nonce"):
            claims["nonce"] = request_params["nonce"]
        key = self.signing_key
        match self.id_token_fault:
            case "wrong_issuer":
                claims["iss"] = "https://impostor.example"
            case "wrong_audience":
                claims["aud"] = "another-client"
            case "expired":
                claims["iat"], claims["exp"] = now - 7200, now - 3600
            case "wrong_authorized_party":  # for us among others, but presented by another client
                claims["aud"], claims["azp"] = [self.client_id, "another-client"], "another-client"
            case "wrong_nonce":
                claims["nonce"] = "not-the-nonce-that-was-sent"
            case "no_nonce":
                claims.pop("nonce", None)
            case "no_subject":
                claims.pop("sub")
            case "bad_signature":
                key = RSAKey.generate_key(2048, parameters={"kid": kid_of(self.signing_key)})  # same kid, another key
            case "unsigned":  # alg "none": a token anyone could have written
                header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
                payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
                return f"{header}.{payload}."
            case "garbage":
                return "not-a-jwt"
        return jwt.encode({"alg": "RS256", "kid": self.signing_key.kid}, claims, key)

    async def token_endpoint(self, request: Request) -> Response:
        params = await read_params(request)
        client_id, refusal = self._client(request, params)
        if refusal is not None:
            return refusal
        grant_type = params.get("grant_type")
        if grant_type == "refresh_token":
            presented = params.get("refresh_token")
            result = self.grants.refresh(presented)
            self.log_grant_event("refresh", result, presented)
            if not result.ok:
                error, status = self.refresh_error
                if self.refresh_error_body is not None:
                    return JSONResponse(self.refresh_error_body, status, headers=_NO_STORE)
                description = _REFRESH_FAILURES.get(result.failure or GrantFailure.UNKNOWN, "The refresh token is invalid.")
                return oauth_error(error, description, status)
        elif grant_type == "authorization_code":
            with self._data_lock:
                request_params = self._code_requests.pop(params.get("code") or "", {})
            result = self.grants.redeem_authorization_code(
                params.get("code"),
                client_id=client_id or "",
                redirect_uri=params.get("redirect_uri"),
                code_verifier=params.get("code_verifier"),
            )
            self.log_grant_event("code exchange", result)
            if not result.ok:
                return oauth_error("invalid_grant", "The authorization code is invalid, used or expired.")
        elif not grant_type:
            return oauth_error("invalid_request", "grant_type is required.")
        else:
            return oauth_error("unsupported_grant_type", f"grant_type {grant_type[:40]!r} is not supported.")
        tokens = result.tokens
        assert tokens is not None
        payload: dict[str, Any] = {"access_token": tokens.access_token, "token_type": "Bearer", "scope": " ".join(tokens.scopes)}
        if tokens.expires_in is not None:
            payload["expires_in"] = tokens.expires_in
        if grant_type == "authorization_code":
            if self._issues_refresh_token(request_params):
                payload["refresh_token"] = tokens.refresh_token
            else:
                self.counters.hit("refresh_token_withheld")
            if self.signing_key is not None and "openid" in request_params.get("scope", "").split():
                payload["id_token"] = self._id_token(request, tokens, request_params)
        elif self.grants.rotate:
            payload["refresh_token"] = tokens.refresh_token  # RFC 6749 §6: a new one only when it rotates
        if tokens.refresh_token_expires_in is not None:
            payload["refresh_token_expires_in"] = tokens.refresh_token_expires_in
        return JSONResponse(payload, headers=_NO_STORE)

    async def _revoke(self, request: Request) -> Response:
        """RFC 7009 §2: 200 whatever the token was; revoking any token of a grant ends the grant."""
        self.counters.hit("revoke")
        if (fault := self.revocation_fault("revoke")) is not None:
            return fault
        params = await read_params(request)
        _, refusal = self._client(request, params)
        if refusal is not None:
            return refusal
        hint = params.get("token_type_hint")
        if hint is not None and hint not in ("access_token", "refresh_token"):
            return oauth_error("unsupported_token_type", "token_type_hint must be access_token or refresh_token.")
        self.grants.end_by_client(params.get("token"))
        return Response(status_code=200)

    def denied_params(self) -> dict[str, str]:
        return {"error": "access_denied", "error_description": "The resource owner denied the request."}

    def identity_summary(self, identity: dict[str, Any]) -> str:
        return f"{identity.get('name')} ({identity.get('sub')})"

    # -- API pipeline hooks ---------------------------------------------------

    def auth_error_response(self, check: TokenCheck) -> Response:
        realm = 'Bearer realm="oauth2-sim"'
        if check.status is TokenStatus.MISSING:  # RFC 6750 §3.1: no error code when no token was sent
            return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": realm})
        if check.status is TokenStatus.INACTIVE:
            return JSONResponse({"error": "account_disabled", "error_description": "The account is disabled."}, 403)
        if check.status is TokenStatus.EXPIRED and self.expired_token_response is not None:
            status, body = self.expired_token_response
            return JSONResponse(body, status)
        description = "The access token expired" if check.status is TokenStatus.EXPIRED else "The access token is invalid"
        challenge = f'{realm}, error="invalid_token", error_description="{description}"'
        return JSONResponse(
            {"error": "invalid_token", "error_description": description}, 401, headers={"WWW-Authenticate": challenge}
        )

    def rate_limited_response(self, request: Request, fault: RateLimitFault, check: TokenCheck) -> Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return JSONResponse(
            {"error": "rate_limited", "error_description": "Too many requests."}, fault.status or 429, headers=headers
        )

    # -- API ------------------------------------------------------------------

    def api_routes(self) -> list[BaseRoute]:
        def route(path: str, method: str, handler: Any) -> Route:
            name = f"{method} {path}"

            async def endpoint(request: Request) -> Response:
                return await self.api_call(request, name, handler)

            return Route(path, endpoint, methods=[method])

        return [
            route("/api/me", "GET", self._me),
            route("/api/projects", "GET", self._list_projects),
            route("/api/projects", "POST", self._create_project),
            route("/api/projects/{project_id}", "GET", self._get_project),
            route("/api/projects/{project_id}", "DELETE", self._delete_project),
            *([route(self.probe_route[1], self.probe_route[0], self._probe)] if self.probe_route else []),
        ]

    async def _probe(self, request: Request, grant: Grant) -> Response:
        assert self.probe_route is not None
        body: Any = grant.identity.get("sub")
        for part in reversed(self.probe_route[2].split(".")):
            body = [body] if part.isdigit() else {part: body}
        return JSONResponse(body)

    @staticmethod
    def _insufficient_scope(grant: Grant, scope: str) -> Response | None:
        if scope in grant.scopes:
            return None
        challenge = f'Bearer realm="oauth2-sim", error="insufficient_scope", scope="{scope}"'
        return JSONResponse({"error": "insufficient_scope", "scope": scope}, 403, headers={"WWW-Authenticate": challenge})

    async def _me(self, request: Request, grant: Grant) -> Response:
        return JSONResponse({**grant.identity, "scopes": list(grant.scopes)})

    async def _list_projects(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "projects:read")) is not None:
            return refusal
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            return JSONResponse({"error": "invalid_request", "error_description": "limit must be an integer"}, 400)
        status = request.query_params.get("status")
        with self._data_lock:
            projects = [copy.deepcopy(p) for p in self._projects.values() if status in (None, p["status"])]
        return JSONResponse({"projects": projects[: max(0, limit)], "total": len(projects)})

    async def _create_project(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "projects:write")) is not None:
            return refusal
        key = request.headers.get("idempotency-key")
        if key is not None:
            with self._data_lock:
                if key in self._idempotent_replies:
                    status, reply = self._idempotent_replies[key]
                    return JSONResponse(copy.deepcopy(reply), status, headers={"Idempotency-Replayed": "true"})
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        with self._data_lock:
            self.json_bodies.append(copy.deepcopy(body))
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
            return JSONResponse({"error": "validation_failed", "error_description": "name is required"}, 422)
        project = self.add_project(
            body["name"],
            description=body.get("description"),
            owner=grant.identity.get("sub"),
            status=str(body.get("status", "active")),
        )
        if key is not None:
            with self._data_lock:
                self._idempotent_replies[key] = (201, project)
        return JSONResponse(project, 201)

    async def _get_project(self, request: Request, grant: Grant) -> Response:
        with self._data_lock:
            project = self._projects.get(request.path_params["project_id"])
        if project is None:
            return JSONResponse({"error": "not_found", "error_description": "No such project."}, 404)
        return JSONResponse(copy.deepcopy(project))

    async def _delete_project(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "projects:write")) is not None:
            return refusal
        with self._data_lock:
            removed = self._projects.pop(request.path_params["project_id"], None)
        if removed is None:
            return JSONResponse({"error": "not_found", "error_description": "No such project."}, 404)
        return Response(status_code=204)

    # -- data -----------------------------------------------------------------

    def add_project(
        self, name: str, *, description: str | None = None, owner: str | None = None, status: str = "active"
    ) -> dict[str, Any]:
        """Add a project directly (seeding); also used by the API handler."""
        with self._data_lock:
            project_id = f"p-{len(self._projects) + 1}"
            while project_id in self._projects:
                project_id += "x"
            project = {
                "id": project_id,
                "name": name,
                "description": description,
                "status": status,
                "owner": owner or self.default_identity.get("sub"),
            }
            self._projects[project_id] = project
            return copy.deepcopy(project)

    def projects(self) -> list[dict[str, Any]]:
        with self._data_lock:
            return [copy.deepcopy(p) for p in self._projects.values()]

    def extra_control_routes(self) -> list[BaseRoute]:
        return [Route("/_sim/projects", self._control_projects, methods=["GET", "POST"])]

    async def _control_projects(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"projects": self.projects()})
        try:
            body = await self.control_body(request)
            name = body["name"]
        except (FaultError, KeyError) as exc:
            return JSONResponse({"error": f'expected {{"name": …}}: {exc}'}, 400)
        return JSONResponse(self.add_project(str(name), description=body.get("description")), 201)


_REFRESH_FAILURES = {
    GrantFailure.UNKNOWN: "The refresh token is invalid.",
    GrantFailure.USED: "The refresh token was already used.",
    GrantFailure.REUSE_DETECTED: "The refresh token was reused; the grant is revoked.",
    GrantFailure.EXPIRED: "The refresh token expired.",
    GrantFailure.REVOKED: "The grant was revoked.",
    GrantFailure.INACTIVE: "The account is disabled.",
}
