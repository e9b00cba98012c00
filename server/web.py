"""The web side, as one Starlette app: the magic-link pages, the OAuth callback, `/healthz`, and on HTTP the MCP
transports (streamable HTTP at `/mcp`, SSE at `/sse`) behind API-key authentication. Plus the listener that serves
it: beside the stdio transport (pages only, loopback) or as the server itself (`--transport http|sse`).

    app = build_web_app(runtime, transports=("http", "sse"))
    async with listening(app, "127.0.0.1", 8765) as listener:
        print(listener.url)
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import jinja2
import uvicorn
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server.app import build_server
from server.console.pages import ConsolePages, signed_in_viewer
from server.identity.link_guard import LinkDecision, LinkGuard
from server.identity.mcp_auth import build_mcp_auth
from server.identity.signin import SignIn, login_url
from server.listener_limits import ListenerLimits
from server.monitoring.logging import get_logger
from server.monitoring.metrics import Metrics
from server.reauth import ReauthFlow, ReauthRefused, Refusal
from server.reauth.flow import CALLBACK_PATH
from server.runtime import Runtime
from server.settings import Settings, is_loopback
from server.web_security import (
    FORM_TOKEN_FIELD,
    FORM_TOKEN_PURPOSE,
    PAGE_HEADERS,
    FormGuard,
    allowed_origins,
    bearer_matches,
    cross_site_reason,
    read_small_form,
)

TRANSPORTS = ("http", "sse")
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
log = get_logger("grantkeeper.web")


@dataclass(frozen=True)
class Wording:
    status: int
    title: str
    message: str
    next_step: str


UNCHANGED = "Nothing was changed."
NEW_LINK = "ask your agent to call the tool again; it will give you a new link."
ASK_AGAIN = NEW_LINK[0].upper() + NEW_LINK[1:]
REFUSALS: dict[Refusal, Wording] = {
    Refusal.LINK_UNKNOWN: Wording(
        404,
        "This link is not valid",
        "The link is incomplete, was altered, or belongs to another grantkeeper server.",
        "Check that you opened the whole link. " + ASK_AGAIN,
    ),
    Refusal.LINK_EXPIRED: Wording(
        410, "This link has expired", "Links are valid for a limited time so that a leaked link is soon useless.", ASK_AGAIN
    ),
    Refusal.LINK_USED: Wording(
        410,
        "This link was already used",
        "Each link works once. It was opened before, or the account was reconnected with another link.",
        "If the agent still reports a problem, " + NEW_LINK,
    ),
    Refusal.ACCOUNT_DISABLED: Wording(
        403,
        "This account is disabled",
        "An administrator disabled the {provider} connection {account}.",
        "Ask your grantkeeper administrator to enable it.",
    ),
    Refusal.CLIENT_NOT_CONFIGURED: Wording(
        503,
        "{provider} is not set up on this server",
        "The server has no {provider} OAuth client id and secret configured.",
        "Tell your grantkeeper administrator; the link stays valid until it expires.",
    ),
    Refusal.STATE_MISSING: Wording(
        400, "This sign-in cannot be completed", "The request came back from the provider without its state parameter.", ASK_AGAIN
    ),
    Refusal.STATE_UNKNOWN: Wording(
        400,
        "This sign-in cannot be completed",
        "The request does not belong to any sign-in started here. It may have been altered or forged.",
        ASK_AGAIN,
    ),
    Refusal.FLOW_FINISHED: Wording(
        409,
        "This sign-in is already finished",
        "The {provider} sign-in for {account} was completed before; a sign-in counts once.",
        "If the agent still reports a problem, " + NEW_LINK,
    ),
    Refusal.FLOW_EXPIRED: Wording(
        410, "This sign-in took too long", "The {provider} sign-in for {account} was started too long ago.", ASK_AGAIN
    ),
    Refusal.OTHER_BROWSER: Wording(
        403,
        "Finish in the browser that opened the link",
        "This {provider} sign-in was started in another browser (or its cookie was cleared), so it cannot be completed here.",
        "Finish in the browser where you opened the link, or " + NEW_LINK,
    ),
    Refusal.ACCESS_DENIED: Wording(
        403,
        "Access was not granted",
        "{provider} says access was declined, so {account} was not connected.",
        "If you declined by mistake, go back and choose Allow, or " + NEW_LINK,
    ),
    Refusal.PROVIDER_ERROR: Wording(
        502, "{provider} did not complete the sign-in", "{provider} returned the error “{error}”.", ASK_AGAIN
    ),
    Refusal.CODE_MISSING: Wording(
        400, "This sign-in cannot be completed", "{provider} sent the browser back without an authorization code.", ASK_AGAIN
    ),
    Refusal.EXCHANGE_FAILED: Wording(
        502, "{provider} did not accept the sign-in", "Exchanging the authorization code failed ({error}).", ASK_AGAIN
    ),
    Refusal.IDENTITY_UNKNOWN: Wording(
        502,
        "Could not confirm the {provider} account",
        "{provider} did not say which account approved access, so it was not connected.",
        ASK_AGAIN,
    ),
    Refusal.ISSUER_MISMATCH: Wording(
        400,
        "This sign-in cannot be completed",
        "The answer did not come from {provider}'s sign-in server (its issuer did not match), so it was not used.",
        ASK_AGAIN,
    ),
    Refusal.ID_TOKEN_INVALID: Wording(
        502,
        "Could not confirm the {provider} account",
        "{provider}'s identity token failed its checks ({error}), so the account was not connected.",
        ASK_AGAIN,
    ),
    Refusal.IDENTITY_MISMATCH: Wording(
        403,
        "That is a different {provider} account",
        "You approved access as {presented}, but {account} is connected to "
        "{expected}. A link only reconnects its own account, so the other account "
        "was not attached.",
        "Go back, sign in to {provider} as {expected} and approve again. A link "
        "cannot swap in a different {provider} account; for that, ask your "
        "grantkeeper administrator.",
    ),
    Refusal.CROSS_SITE: Wording(
        403,
        "This request came from another site",
        "The Continue button was pressed on a page that is not this grantkeeper server's. "
        "Another site cannot connect or reconnect accounts through your browser.",
        "If you meant to connect an account, open the link you were given yourself and press Continue there.",
    ),
    Refusal.FORM_TOKEN_INVALID: Wording(
        403,
        "This form cannot be used",
        "The form did not carry the token this server gave the page in your "
        "browser: the page was opened in another browser, its cookies were "
        "cleared, or the form was not this server's.",
        "Open the link again in this browser and press Continue.",
    ),
}


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("provider_name", None)
    return HTMLResponse(_templates.get_template(template).render(**values), status, headers=PAGE_HEADERS)


def refusal_page(refused: ReauthRefused) -> HTMLResponse:
    wording = REFUSALS[refused.refusal]
    context = refused.context
    account, connector = context.get("account"), context.get("connector")
    if connector is not None:
        provider = connector.spec.display_name
    else:
        provider = account.connector.capitalize() if account else "the provider"
    values = {
        "provider": provider,
        "account": account.display_name if account else "the account",
        "presented": context.get("presented", ""),
        "expected": context.get("expected", ""),
        "error": context.get("error", ""),
    }
    # The footer names the provider only when it is known ("keeps your account grant", not "your the provider grant").
    return render(
        "message.html",
        wording.status,
        outcome=refused.refusal.value,
        provider_name=provider if account or connector else None,
        title=wording.title.format(**values),
        paragraphs=[wording.message.format(**values), UNCHANGED],
        next_step=wording.next_step.format(**values),
    )


def owner_of(account: Any) -> str:
    return f"{account.user} (org {account.org})"


class LinkPages:
    """`/connect/{token}` (GET shows, POST starts the provider sign-in), `/oauth/callback`, `/healthz`, and with
    sign-in configured `/login`, `/logout`. A link goes on only for the person it was made for (LinkGuard)."""

    def __init__(self, runtime: Runtime, *, remote: bool = False):
        self.runtime = runtime
        self.flow = ReauthFlow(runtime)
        self.guard = LinkGuard(runtime.settings, remote)
        self.sign_in = SignIn(runtime, render) if runtime.settings.sign_in_enabled else None
        self.forms = FormGuard(runtime.vault.keyring.derive(FORM_TOKEN_PURPOSE), secure=self._secure)

    def routes(self) -> list[BaseRoute]:
        return [
            *(self.sign_in.routes() if self.sign_in else []),
            Route("/connect/{token}", self.show_link, methods=["GET"]),
            Route("/connect/{token}", self.begin, methods=["POST"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ]

    async def show_link(self, request: Request) -> Response:
        try:
            view = await self.flow.open(request.path_params["token"])
        except ReauthRefused as refused:
            return refusal_page(refused)
        account, link = view.account, view.link
        if (refusal := await self._guarded(request, view)) is not None:
            return refusal
        connector = self.flow.connector_for(account)
        provider = connector.spec.display_name
        connecting = link.purpose == "connect"
        why = (
            f"An AI agent asked to connect a {provider} account for {owner_of(account)}."
            if connecting
            else f"The {provider} grant for {account.display_name} stopped working"
            f"{f' ({link.reason})' if link.reason else ''}, so the agent cannot use it until it is reconnected."
        )
        expected = (
            connector.provider.describe_identity(account.provider_account_id, account.provider_identity or {})
            if account.provider_account_id
            else None
        )
        issued = self.forms.issue(request, _form_scope(link))
        page = render(
            "connect.html",
            verb="Connect" if connecting else "Reconnect",
            provider_name=provider,
            why=why,
            account_name=account.display_name,
            owner=owner_of(account),
            expected=expected,
            expires_at=f"{link.expires_at:%Y-%m-%d %H:%M} UTC",
            form_token_field=FORM_TOKEN_FIELD,
            form_token=issued.form_token,
        )
        self.forms.set_cookie(page, issued)
        return page

    async def begin(self, request: Request) -> Response:
        """Continue: only from our own page in the browser it was given to (cross-site check, then form token),
        and only then is the link spent. Every refusal before `flow.begin` writes nothing."""
        reason = cross_site_reason(request, allowed_origins(self.runtime.settings.public_url, request))
        if reason is not None:
            log.warning(
                "cross_site_request_refused",
                reason=reason,
                origin=request.headers.get("origin", "")[:200],
                sec_fetch_site=request.headers.get("sec-fetch-site", "")[:32],
            )
            return refusal_page(ReauthRefused(Refusal.CROSS_SITE))
        token = request.path_params["token"]
        try:
            view = await self.flow.open(token)
        except ReauthRefused as refused:
            return refusal_page(refused)
        form = await read_small_form(request)
        if not self.forms.verify(request, _form_scope(view.link), (form or {}).get(FORM_TOKEN_FIELD)):
            log.warning(
                "form_token_refused",
                account=view.account.display_name,
                reason="unreadable_form" if form is None else "token_mismatch",
            )
            return refusal_page(ReauthRefused(Refusal.FORM_TOKEN_INVALID, account=view.account))
        if (refusal := await self._guarded(request, view)) is not None:
            return refusal
        try:
            started = await self.flow.begin(token)
        except ReauthRefused as refused:
            return refusal_page(refused)
        response = RedirectResponse(started.authorize_url, 303, headers=PAGE_HEADERS)
        response.set_cookie(
            started.cookie_name,
            started.cookie_value,
            max_age=started.cookie_max_age,
            path=self._cookie_path(),
            secure=self._secure(),
            httponly=True,
            samesite="lax",
        )
        return response

    async def _guarded(self, request: Request, view: Any) -> Response | None:
        """None when this browser may go on with the link; otherwise the page to show instead. Writes nothing."""
        signed_in = await self.sign_in.current(request) if self.sign_in else None
        decision = self.guard.decide(view.link, view.account, signed_in)
        provider = self.flow.connector_for(view.account).spec.display_name
        if decision is LinkDecision.SIGN_IN:
            return RedirectResponse(login_url(request.url.path), 303, headers=PAGE_HEADERS)
        if decision is LinkDecision.WRONG_PERSON:
            assert signed_in is not None
            log.warning(
                "link_refused_wrong_person",
                account=view.account.display_name,
                signed_in_org=signed_in.person.org,
                signed_in_user=signed_in.person.user,
            )
            return render(
                "message.html",
                403,
                outcome="wrong_person",
                provider_name=provider,
                title="This link is for someone else",
                paragraphs=[
                    f"This link connects {provider} for {owner_of(view.account)}, but you are "
                    f"signed in as {signed_in.person.display}. If someone sent you this link, "
                    "they may be trying to act as you.",
                    UNCHANGED,
                ],
                next_step="Close this page. If you need the connection yourself, ask your own agent for a link.",
            )
        if decision is LinkDecision.UNVERIFIED_REFUSED:
            log.warning("link_refused_unverified", account=view.account.display_name)
            return render(
                "message.html",
                403,
                outcome="admin_action_required",
                provider_name=provider,
                title="This server cannot check who you are",
                paragraphs=[
                    "A connect link made by an agent can only be completed by the person it is "
                    "for, and this server has no sign-in configured to check that. The link was "
                    "not used.",
                    UNCHANGED,
                ],
                next_step="Ask your grantkeeper administrator to set up sign-in (GRANTKEEPER_OIDC_ISSUER, "
                "GRANTKEEPER_OIDC_CLIENT_ID, GRANTKEEPER_OIDC_CLIENT_SECRET), or to issue the "
                "link with `grantkeeper link`.",
            )
        return None

    async def callback(self, request: Request) -> Response:
        try:
            done = await self.flow.complete(request.query_params, request.cookies)
        except ReauthRefused as refused:
            return refusal_page(refused)
        provider = done.connector.spec.display_name
        verb = "connected" if done.purpose == "connect" else "reconnected"
        paragraphs = [
            f"{done.account.display_name} is {verb} for {owner_of(done.account)}, signed in as {done.provider_account}."
        ]
        if done.needs_user_at is not None:
            paragraphs.append(
                f"{provider} did not grant lasting access (no refresh token), so this connection stops "
                f"working at {done.needs_user_at:%Y-%m-%d %H:%M} UTC. You will be offered a link to "
                "reconnect before then."
            )
        response = render(
            "message.html",
            outcome="reconnected",
            provider_name=provider,
            title=f"{provider} is {verb}",
            paragraphs=paragraphs,
            next_step="Close this tab and go back to your agent: its next call will work.",
        )
        for name in request.cookies:
            if name.startswith("gk_flow_"):
                response.delete_cookie(name, path=self._cookie_path(), secure=self._secure(), httponly=True, samesite="lax")
        return response

    async def healthz(self, request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(_ping, self.runtime)
        except Exception:
            log.warning("healthz_database_unreachable", exc_info=True)
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, 503, headers={"Cache-Control": "no-store"})
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    def _cookie_path(self) -> str:
        return urlsplit(self.runtime.settings.public_url).path.rstrip("/") + CALLBACK_PATH

    def _secure(self) -> bool:
        return self.runtime.settings.public_url.startswith("https://")


def _form_scope(link: Any) -> str:
    return f"connect:{link.id}"


def _ping(runtime: Runtime) -> None:
    with runtime.vault.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def build_web_app(
    runtime: Runtime,
    *,
    transports: Collection[str] = (),
    host: str = "127.0.0.1",
    metrics: bool = True,
    client_documents_http: Any = None,
) -> Starlette:
    """The pages (magic links, sign-in, the operator's console), plus the MCP transports named in `transports`
    ("http" → /mcp, "sse" → /sse + /messages/) and whatever authorizes their callers (server/identity/mcp_auth.py),
    and `/metrics` unless it has a listener of its own (`metrics_app`). Build it once the public URL is known."""
    pages = LinkPages(runtime, remote=bool(transports))
    console = ConsolePages(
        runtime,
        render,
        session_viewer=signed_in_viewer(pages.sign_in) if pages.sign_in else None,
        sign_in_url=login_url if pages.sign_in else None,
    )
    routes = [*pages.routes(), *console.routes(), *([metrics_route(runtime.settings, runtime.metrics)] if metrics else [])]
    if not transports:
        return Starlette(routes=routes)
    unknown = set(transports) - set(TRANSPORTS)
    if unknown:
        raise ValueError(f"unknown transports {sorted(unknown)}")
    # client_documents_http: the client that fetches CIMD documents (tests hand in one trusting their loopback CA).
    mcp_auth = build_mcp_auth(runtime, pages.sign_in, render, client_documents_http)
    routes += mcp_auth.routes
    verifier = mcp_auth.verifier
    server, _ = build_server(runtime, token_verifier=verifier, auth=mcp_auth.settings)
    security = transport_security(runtime.settings, host)
    lifespan = None
    if "http" in transports:
        mcp_app = server.streamable_http_app(
            streamable_http_path="/mcp",
            transport_security=security,
            host=host,
            stateless_http=runtime.settings.http_stateless,
            session_idle_timeout=runtime.settings.mcp_session_idle_seconds,
        )
        routes += mcp_app.routes

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with server.session_manager.run():
                yield

    if "sse" in transports:
        routes += server.sse_app(sse_path="/sse", message_path="/messages/", transport_security=security, host=host).routes
    # The SDK's bearer middleware: it reads the key on every request; /mcp and /sse then insist on one (401).
    middleware = [Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(verifier)), Middleware(AuthContextMiddleware)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def metrics_route(settings: Settings, metrics: Metrics) -> Route:
    """`/metrics` for Prometheus: tool calls by status, lifecycle events by kind; no account names. With
    GRANTKEEPER_METRICS_TOKEN set, only for `Authorization: Bearer <that token>`."""

    async def prometheus_metrics(request: Request) -> Response:
        if settings.metrics_token and not bearer_matches(request.headers.get("authorization", ""), settings.metrics_token):
            return JSONResponse(
                {"error": "unauthorized"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
            )
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return Route("/metrics", prometheus_metrics, methods=["GET"])


def metrics_app(settings: Settings, metrics: Metrics) -> Starlette:
    """`/metrics` alone, for its own loopback listener (GRANTKEEPER_METRICS_PORT)."""
    return Starlette(routes=[metrics_route(settings, metrics)])


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


# ---- the listener ---------------------------------------------------------------------------------------
class _EmbeddedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: anyio.Event):
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()

    def capture_signals(self):  # type: ignore[override]
        # The host process owns the signals (`serve` stops the listener on SIGTERM and then cleans up); uvicorn
        # would otherwise re-raise them after shutting down and skip that clean-up.
        return contextlib.nullcontext()


@dataclass
class Listener:
    url: str
    _server: _EmbeddedServer
    _stopped: anyio.Event

    async def wait_closed(self) -> None:
        """Until the server stops of its own accord (it normally runs until the `listening` block ends)."""
        await self._stopped.wait()


def bind(host: str, port: int) -> socket.socket:
    """Bind now, so a busy port is an OSError here and port 0 becomes a real port before any link is issued."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


@contextlib.asynccontextmanager
async def listening(
    app: Any, host: str, port: int, limits: ListenerLimits | None = None, *, sock: socket.socket | None = None
) -> AsyncIterator[Listener]:
    """Serve `app` with uvicorn in this event loop until the block ends (on `sock` if already bound). Access logs
    stay off: request lines carry magic-link tokens and OAuth codes. `limits`: against slow and greedy clients
    (server/listener_limits.py)."""
    sock = sock or bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=bound_host,
        port=bound_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
        **(limits or ListenerLimits()).uvicorn_options(),
    )
    ready, stopped = anyio.Event(), anyio.Event()
    server = _EmbeddedServer(config, ready)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn's way of saying the app failed to start
            log.error("web_listener_failed", host=bound_host, port=bound_port)
        finally:
            ready.set()
            stopped.set()
            sock.close()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await ready.wait()
        if not server.started:
            raise RuntimeError(f"the web listener on {bound_host}:{bound_port} did not start")
        url_host = _reachable_host(bound_host)
        try:
            yield Listener(f"http://{url_host}:{bound_port}", server, stopped)
        finally:
            server.should_exit = True


def listener_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{_reachable_host(host)}:{port}"


def _reachable_host(host: str) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def adopt_public_url(settings: Settings, listener_url: str) -> None:
    """Links point at the listener unless GRANTKEEPER_PUBLIC_URL says otherwise."""
    if "public_url" not in settings.model_fields_set:
        settings.public_url = listener_url


# ---- serve ----------------------------------------------------------------------------------------------
async def serve(runtime: Runtime, transport: str, *, host: str | None = None, port: int | None = None) -> None:
    """`grantkeeper serve --transport http|sse`: the whole web app (stdio: server/stdio_server.py)."""
    settings = runtime.settings
    host = host or settings.listen_host
    port = settings.listen_port if port is None else port
    limits = ListenerLimits.from_settings(settings)
    metrics_apart = settings.metrics_port is not None
    async with contextlib.AsyncExitStack() as metrics_stack:
        if metrics_apart:
            metrics = await metrics_stack.enter_async_context(
                listening(metrics_app(settings, runtime.metrics), "127.0.0.1", settings.metrics_port, limits)
            )
            log.info("metrics_listener_started", url=f"{metrics.url}/metrics")
        await _serve_transport(runtime, transport, host, port, limits, metrics=not metrics_apart)


async def _serve_transport(
    runtime: Runtime, transport: str, host: str, port: int, limits: ListenerLimits, *, metrics: bool
) -> None:
    settings = runtime.settings
    transports = TRANSPORTS if transport == "http" else ("sse",)
    # Bound first, so that with port 0 the public URL (the OAuth issuer and resource) is known when the app is built.
    sock = bind(host, port)
    adopt_public_url(settings, listener_url(sock))
    app = build_web_app(runtime, transports=transports, host=host, metrics=metrics)
    async with listening(app, host, port, limits, sock=sock) as listener:
        adopt_public_url(settings, listener.url)
        if host in ("0.0.0.0", "::") and "public_url" not in settings.model_fields_set:
            log.warning(
                "public_url_guessed",
                public_url=settings.public_url,
                notice="Set GRANTKEEPER_PUBLIC_URL to the address browsers reach this server at.",
            )
        public_host = urlsplit(settings.public_url).hostname or ""
        if settings.public_url.startswith("http://") and not is_loopback(public_host):
            log.warning(
                "public_url_not_https",
                public_url=settings.public_url,
                notice="Magic links and OAuth callbacks would cross the network in clear text; serve "
                "them over https (a TLS-terminating proxy) and set GRANTKEEPER_PUBLIC_URL to it.",
            )
        endpoints = {"mcp": f"{listener.url}/mcp"} if "http" in transports else {}
        log.info("http_server_started", url=listener.url, public_url=settings.public_url, sse=f"{listener.url}/sse", **endpoints)
        await until_signalled_or_closed(listener)
    log.info("http_server_stopped")


async def until_signalled_or_closed(listener: Listener) -> None:
    """SIGINT/SIGTERM end the block (uvicorn then drains connections), so the caller's clean-up still runs."""
    async with anyio.create_task_group() as group:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("shutting_down", signal=signal.Signals(signum).name)
                    break
            group.cancel_scope.cancel()

        group.start_soon(on_signal)
        await listener.wait_closed()
        group.cancel_scope.cancel()
