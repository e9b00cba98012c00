"""Assembles who may call the HTTP transports, per GRANTKEEPER_MCP_AUTHORIZATION: the bearer verifier, the SDK's
AuthSettings (which make /mcp and /sse answer 401 with `resource_metadata` and serve RFC 9728 metadata), and — in
`grantkeeper` mode — the SDK's authorization server routes with CIMD added, plus the consent pages."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx2
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from pydantic import AnyHttpUrl
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import TOOLS_SCOPE, ApiKeyVerifier
from server.identity.authorization_server import GrantkeeperAuthorizationServer, mcp_resource_url, requested_resources
from server.identity.callers import CallerVerifier
from server.identity.client_documents import ClientDocumentError, ClientDocuments, looks_like_document_url
from server.identity.consent import ConsentPages
from server.identity.resource_server import ExternalTokenVerifier
from server.identity.signin import Render, SignIn
from server.runtime import Runtime

METADATA_PATH = "/.well-known/oauth-authorization-server"


@dataclass
class McpAuth:
    verifier: CallerVerifier
    settings: AuthSettings
    routes: list[BaseRoute] = field(default_factory=list)
    authorization_server: GrantkeeperAuthorizationServer | None = None
    external: ExternalTokenVerifier | None = None


def build_mcp_auth(
    runtime: Runtime, sign_in: SignIn | None, render: Render, documents_http: httpx2.AsyncClient | None = None
) -> McpAuth:
    settings = runtime.settings
    resource = mcp_resource_url(settings)
    api_keys = ApiKeyVerifier(runtime.vault)
    mode = settings.mcp_authorization
    if mode == "api_keys":
        # Keys are checked locally and there is no authorization server to advertise: a plain `Bearer` challenge.
        return McpAuth(
            CallerVerifier(api_keys, resource=resource),
            AuthSettings(issuer_url=settings.public_url, resource_server_url=None, required_scopes=[TOOLS_SCOPE]),
        )
    auth_settings = AuthSettings(
        issuer_url=settings.mcp_external_issuer if mode == "external" else settings.public_url,
        resource_server_url=resource,
        required_scopes=[TOOLS_SCOPE],
        validate_token_resource=False,
    )  # CallerVerifier checks the audience itself
    if mode == "external":
        external = ExternalTokenVerifier(settings, runtime.http, resource)
        return McpAuth(CallerVerifier(api_keys, external=external, resource=resource), auth_settings, external=external)

    assert sign_in is not None  # Settings refuses `grantkeeper` without sign-in
    documents = ClientDocuments(documents_http or runtime.http)
    server = GrantkeeperAuthorizationServer(runtime.vault, settings, documents)
    registration = ClientRegistrationOptions(
        enabled=settings.mcp_dynamic_registration, valid_scopes=[TOOLS_SCOPE], default_scopes=[TOOLS_SCOPE]
    )
    revocation = RevocationOptions(enabled=True)
    issuer = auth_settings.issuer_url  # (its model keeps a path-less URL without a trailing slash)
    routes: list[BaseRoute] = []
    for route in create_auth_routes(server, issuer, client_registration_options=registration, revocation_options=revocation):
        if isinstance(route, Route) and route.path == METADATA_PATH:
            route = Route(
                METADATA_PATH,
                endpoint=cors_middleware(_metadata_handler(issuer, registration, revocation), ["GET", "OPTIONS"]),
                methods=["GET", "OPTIONS"],
            )
        elif isinstance(route, Route) and route.path == "/authorize":
            route = Route("/authorize", endpoint=ClientDocumentGate(route.app, documents), methods=["GET", "POST"])
        elif isinstance(route, Route) and route.path == "/token":
            route = Route("/token", endpoint=TokenResourceGate(route.app), methods=["POST", "OPTIONS"])
        routes.append(route)
    routes += ConsentPages(server, sign_in, render).routes()
    return McpAuth(
        CallerVerifier(api_keys, authorization_server=server, resource=resource),
        auth_settings,
        routes,
        authorization_server=server,
    )


def _metadata_handler(issuer: AnyHttpUrl, registration: ClientRegistrationOptions, revocation: RevocationOptions):
    """The SDK's RFC 8414 metadata, plus what it does not say by itself: CIMD support, public clients (`none`
    with PKCE) at the token endpoint, and RFC 9207 `iss` on authorization responses."""
    metadata = build_metadata(issuer, None, registration, revocation)
    metadata.client_id_metadata_document_supported = True
    metadata.authorization_response_iss_parameter_supported = True
    metadata.token_endpoint_auth_methods_supported = ["none", "client_secret_post", "client_secret_basic"]
    return MetadataHandler(metadata).handle


class ClientDocumentGate:
    """In front of the SDK's /authorize: a URL client_id whose metadata document cannot be used gets a clear
    OAuth error naming why (the SDK would only say "not found"). Good documents are cached for the SDK's lookup."""

    def __init__(self, app: ASGIApp, documents: ClientDocuments):
        self.app = app
        self.documents = documents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        client_id = request.query_params.get("client_id", "") if request.method == "GET" else ""
        if client_id and looks_like_document_url(client_id):
            try:
                await self.documents.client(client_id)
            except ClientDocumentError as refused:
                response: Response = JSONResponse(
                    {"error": "invalid_client", "error_description": str(refused)}, 400, headers={"Cache-Control": "no-store"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


MAX_TOKEN_REQUEST_BYTES = 64 * 1024  # a token request is a handful of short form fields


class TokenResourceGate:
    """In front of the SDK's /token: reads the form's `resource` values into `requested_resources` for the
    provider's exchanges to check (the SDK does not pass them on for the code and refresh grants), then hands the
    request on with its body replayed unchanged."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        size = 0

        async def recording() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > MAX_TOKEN_REQUEST_BYTES:
                raise _TooLarge
            received.append(message)
            return message

        try:
            form = await Request(scope, recording).form()
        except (_TooLarge, HTTPException, MultiPartException) as refused:
            too_large = isinstance(refused, _TooLarge)
            response: Response = JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "the token request is too large" if too_large else "the token request is not a form",
                },
                413 if too_large else 400,
                headers={"Cache-Control": "no-store"},
            )
            await response(scope, receive, send)
            return
        values = tuple(value if isinstance(value, str) else "" for value in form.getlist("resource"))
        await form.close()

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        reset = requested_resources.set(values)
        try:
            await self.app(scope, replay, send)
        finally:
            requested_resources.reset(reset)


class _TooLarge(Exception):
    pass
