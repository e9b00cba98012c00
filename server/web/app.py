"""The web app as one Starlette application: every route it serves in one list, and on HTTP the MCP transports
(streamable HTTP at `/mcp`, SSE at `/sse`) behind the SDK's bearer authentication.

    app = build_web_app(runtime, transports=("http", "sse"))
    async with listening(app, "127.0.0.1", 8765) as listener:
        print(listener.url)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from urllib.parse import urlsplit

import httpx2
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import BaseRoute, Route

from server.app import build_server
from server.console.pages import ConsolePages, signed_in_viewer
from server.identity.mcp_auth import build_mcp_auth
from server.identity.signin import SignIn, login_url
from server.reauth.flow import CALLBACK_PATH
from server.runtime import Runtime
from server.settings import Settings, is_loopback
from server.web.health import health_check
from server.web.link_pages import LinkPages
from server.web.metrics import metrics_endpoint
from server.web.rendering import render

TRANSPORTS = ("http", "sse")
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def build_web_app(
    runtime: Runtime,
    *,
    transports: Collection[str] = (),
    host: str = "127.0.0.1",
    metrics: bool = True,
    client_documents_http: httpx2.AsyncClient | None = None,
) -> Starlette:
    """The pages (magic links, sign-in, the operator's console), plus the MCP transports named in `transports`
    ("http" → /mcp, "sse" → /sse + /messages/) and whatever authorizes their callers (server/identity/mcp_auth.py),
    and `/metrics` unless it has a listener of its own (`metrics_app`). Build it once the public URL is known.
    `client_documents_http`: the client that fetches CIMD documents (tests hand in one trusting their loopback CA)."""
    settings = runtime.settings
    sign_in = SignIn(runtime, render) if settings.sign_in_enabled else None
    links = LinkPages(runtime, sign_in, remote=bool(transports))
    console = ConsolePages(
        runtime,
        render,
        session_viewer=signed_in_viewer(sign_in) if sign_in else None,
        sign_in_url=login_url if sign_in else None,
    )
    routes: list[BaseRoute] = [
        *(sign_in.routes() if sign_in else []),  # /login, its callback, /logout (server/identity/signin.py)
        Route("/connect/{token}", links.show_link, methods=["GET"]),
        Route("/connect/{token}", links.begin, methods=["POST"]),
        Route(CALLBACK_PATH, links.callback, methods=["GET"]),
        Route("/healthz", health_check(runtime), methods=["GET"]),
        *console.routes(),  # /dashboard and /accounts (server/console/pages.py)
        *([Route("/metrics", metrics_endpoint(settings, runtime.metrics), methods=["GET"])] if metrics else []),
    ]
    if not transports:
        return Starlette(routes=routes)

    unknown = set(transports) - set(TRANSPORTS)
    if unknown:
        raise ValueError(f"unknown transports {sorted(unknown)}")
    mcp_auth = build_mcp_auth(runtime, sign_in, render, client_documents_http)
    server, _ = build_server(runtime, token_verifier=mcp_auth.verifier, auth=mcp_auth.settings)
    security = transport_security(settings, host)
    routes += mcp_auth.routes  # OAuth metadata, /authorize, /token, consent (server/identity/mcp_auth.py)
    lifespan: Lifespan | None = None
    if "http" in transports:
        routes += server.streamable_http_app(
            streamable_http_path="/mcp",
            transport_security=security,
            host=host,
            stateless_http=settings.http_stateless,
            session_idle_timeout=settings.mcp_session_idle_seconds,
        ).routes
        lifespan = _running_sessions(server)
    if "sse" in transports:
        routes += server.sse_app(sse_path="/sse", message_path="/messages/", transport_security=security, host=host).routes
    # The SDK's bearer middleware: it reads the key on every request; /mcp and /sse then insist on one (401).
    middleware = [
        Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(mcp_auth.verifier)),
        Middleware(AuthContextMiddleware),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _running_sessions(server: MCPServer) -> Lifespan:
    """The app's lifespan on streamable HTTP: the SDK's session manager runs while the app does."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return lifespan


def transport_security(settings: Settings, host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection on loopback (as the SDK does by itself), also accepting the public URL's host."""
    if not is_loopback(host):
        return None  # behind a proxy the Host header is the proxy's business
    public = urlsplit(settings.public_url)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", public.netloc],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", f"{public.scheme}://{public.netloc}"],
    )
