"""Machinery shared by the provider simulators.

Request pipelines with fault injection, the consent page and the ``/_sim/`` control API.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
from markupsafe import escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .faults import Chaos, Counters, Faults, HostileResponse, RateLimitFault, TokenAnswerFault
from .grants import Grant, GrantResult, GrantStore, TokenCheck, TokenPolicy, TokenSet, redact

# The cookie every API answer sets (simulators/base.py api_call): a client must never present it again.
API_COOKIE = "sim_session"
# The most requests one control-API fault may cover: far more than a test or the demo asks for.
MAX_FAULT_COUNT = 1_000_000

ApiHandler = Callable[[Request, Grant], Awaitable[Response]]

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


class FaultError(ValueError):
    """A control-API fault request that cannot be applied."""


async def read_params(request: Request) -> dict[str, str]:
    """Query string merged with a form or JSON body; OAuth endpoints accept all three."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method in ("POST", "PUT", "PATCH"):
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                body = {}
            if isinstance(body, dict):
                params.update(body)
        elif content_type.startswith("multipart/form-data"):
            params.update((await request.form()).items())
        else:
            # Parsed here rather than by request.form() so urlencoded bodies need no python-multipart.
            params.update(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    return {key: value if isinstance(value, str) else json.dumps(value, default=str) for key, value in params.items()}


def basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return user, password


def bearer_token(request: Request, schemes: tuple[str, ...] = ("bearer",)) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in schemes:
        return None
    return token.strip() or None


def add_query(url: str, params: dict[str, str | None]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(key, value) for key, value in params.items() if value is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


class ProviderSimulator:
    """Base for one simulated provider: subclasses add their API routes and error shapes."""

    provider_title: str  # a class attribute; the generic OAuth 2.0 simulator takes it per instance
    token_path: ClassVar[str]
    authorize_path: ClassVar[str]
    identity_fields: ClassVar[tuple[tuple[str, str], ...]]  # (identity key, label) shown on the consent page
    # Provider-specific authorize parameters carried through the consent form (Google's access_type, prompt).
    authorize_passthrough: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        app_name: str,
        default_identity: dict[str, Any],
        default_scopes: list[str],
        policy: TokenPolicy,
        reuse_detection: bool = True,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_name = app_name
        self.default_identity = dict(default_identity)
        self.default_scopes = list(default_scopes)
        self.counters = Counters()
        self.faults = Faults()
        self.grants = GrantStore(policy, self.counters, reuse_detection=reuse_detection)
        self.log = logging.getLogger(f"grantkeeper.simulators.{type(self).__name__}")
        self._data_lock = threading.RLock()  # guards subclass data (messages, issues)
        self.app = Starlette(
            routes=[*self.api_routes(), *self.revocation_routes(), *self._oauth_routes(), *self._control_routes()]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A simulator is itself an ASGI app, so it can be handed straight to SimulatorServer.
        await self.app(scope, receive, send)

    # -- subclass hooks ---------------------------------------------------

    def api_routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    async def token_endpoint(self, request: Request) -> Response:
        raise NotImplementedError

    async def api_token(self, request: Request) -> str | None:
        return bearer_token(request)

    def auth_error_response(self, check: TokenCheck) -> Response:
        raise NotImplementedError

    def rate_limited_response(self, request: Request, fault: RateLimitFault, check: TokenCheck) -> Response:
        raise NotImplementedError

    def server_error_response(self, status: int) -> Response:
        return Response(f"{status} simulated upstream failure", status_code=status, media_type="text/plain")

    def admit(self, request: Request, endpoint: str, check: TokenCheck) -> Response | None:
        """Last chance to refuse an API request before authentication (e.g. a spent rate budget)."""
        return None

    def finish_api_response(self, request: Request, endpoint: str, check: TokenCheck, response: Response) -> Response:
        return response

    def parse_scopes(self, raw: str) -> list[str]:
        return [scope for scope in raw.replace(",", " ").split() if scope]

    def identity_from_form(self, form: dict[str, str]) -> dict[str, Any]:
        identity = dict(self.default_identity)
        for key, _ in self.identity_fields:
            if form.get(key):
                identity[key] = form[key].strip()
        return identity

    def identity_summary(self, identity: dict[str, Any]) -> str:
        return ", ".join(f"{identity.get(key)}" for key, _ in self.identity_fields)

    def consent_target(self) -> str:
        return f"your {self.provider_title} account"

    def denied_params(self) -> dict[str, str]:
        return {"error": "access_denied"}

    def extra_faults(self) -> dict[str, Callable[..., dict[str, Any] | None]]:
        return {}

    def authorization_granted(self, code: str, params: dict[str, str]) -> None:
        """Called with each code issued on consent and the authorize parameters that produced it."""

    def extra_control_routes(self) -> list[BaseRoute]:
        return []

    def revocation_routes(self) -> list[BaseRoute]:
        """The provider's own way for a client to end a grant (Slack auth.revoke, GitHub grant deletion, …)."""
        return []

    def revocation_fault(self, endpoint: str) -> Response | None:
        """Revocation requests meet outages and the failures injected with `fail()` (for any endpoint or this one),
        so a test can make offboarding find the provider down and watch it retried later."""
        if self.faults.in_outage():
            self.counters.incr("server_errors")
            return self.server_error_response(503)
        failure = self.faults.take_failure(endpoint)
        if failure is None:
            return None
        self.counters.incr("server_errors")
        return self.server_error_response(failure.status)

    # -- request pipelines ------------------------------------------------

    async def api_call(self, request: Request, endpoint: str, handler: ApiHandler) -> Response:
        self.counters.incr("api_requests")
        self.counters.hit(endpoint)
        if "cookie" in request.headers:
            self.counters.incr("cookies_presented")
        if latency := self.faults.take_api_latency():
            await asyncio.sleep(latency)
        if self.faults.take_reset():
            self.counters.incr("connection_resets")
            return _DroppedConnection()
        if (hostile := self.faults.take_answer()) is not None:
            return HostileResponse(hostile, self.counters)
        check = self.grants.check_access_token(await self.api_token(request))
        if self.faults.in_outage():
            self.counters.incr("server_errors")
            response = self.server_error_response(503)
        elif (failure := self.faults.take_failure(endpoint)) is not None:
            self.counters.incr("server_errors")
            grant = check.usable_grant
            if failure.after_processing and grant is not None and self.admit(request, endpoint, check) is None:
                await handler(request, grant)  # the change lands, the answer is lost
            response = self.server_error_response(failure.status)
        elif (limit := self.faults.take_rate_limit()) is not None:
            self.counters.incr("rate_limited")
            response = self.rate_limited_response(request, limit, check)
        elif (refusal := self.admit(request, endpoint, check)) is not None:
            response = refusal
        elif (grant := check.usable_grant) is None:
            response = self.auth_error_response(check)
        else:
            response = await handler(request, grant)
        response = self.finish_api_response(request, endpoint, check, response)
        # Real APIs set cookies (a CDN's, a session layer's); a client must never send one back for another account.
        response.set_cookie(API_COOKIE, secrets.token_urlsafe(12), httponly=True, samesite="lax")
        return response

    def client_authenticated(self, client_id: str | None, client_secret: str | None) -> bool:
        return client_id == self.client_id and client_secret == self.client_secret

    async def _token_request(self, request: Request) -> Response:
        self.counters.incr("token_requests")
        self.counters.hit("token")
        if self.faults.token_endpoint_latency_seconds:
            await asyncio.sleep(self.faults.token_endpoint_latency_seconds)
        if (chaos := self.faults.take_chaos("token_hangs")) is not None:
            await asyncio.sleep(chaos.hang_seconds)
            self.counters.incr("server_errors")
            return self.server_error_response(504)
        if self.faults.take_chaos("token_errors") is not None:
            self.counters.incr("server_errors")
            return self.server_error_response(503)
        failure = self.faults.take_token_endpoint_failure()
        if failure is not None and not failure.after_processing:
            self.counters.incr("server_errors")
            return self.server_error_response(failure.status)
        answer = self.faults.take_token_answer()
        if answer is not None and not answer.after_processing:
            return _changed_answer(Response(b"{}", media_type="application/json"), answer)
        response = await self.token_endpoint(request)
        if failure is not None:
            # The rotation happened but the client never learns the new tokens.
            self.counters.incr("server_errors")
            return self.server_error_response(failure.status)
        if answer is not None:
            response = _changed_answer(response, answer)
        drip = self.faults.take_token_drip()
        if drip is not None:
            response = self._trickled(response, drip)
        return response

    def _trickled(self, response: Response, seconds: float) -> Response:
        body = bytes(response.body)
        pause = seconds / max(1, len(body))

        async def one_byte_at_a_time():
            self.counters.incr("slow_answers")
            for index in range(len(body)):
                yield body[index : index + 1]
                await asyncio.sleep(pause)

        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return StreamingResponse(one_byte_at_a_time(), response.status_code, headers=headers)

    def log_grant_event(self, event: str, result: GrantResult, presented: str | None = None) -> None:
        self.log.info(
            "%s %s presented=%s issued=%s",
            event,
            result.failure.value if result.failure else "ok",
            redact(presented),
            redact(result.tokens.refresh_token) if result.tokens else "-",
        )

    # -- authorization (consent page) -------------------------------------

    def _oauth_routes(self) -> list[BaseRoute]:
        return [
            Route(self.token_path, self._token_request, methods=["POST"]),
            Route(self.authorize_path, self._authorize, methods=["GET", "POST"]),
        ]

    def _authorize_problem(self, params: dict[str, str]) -> str | None:
        if params.get("client_id") != self.client_id:
            return "Unknown client_id."
        if urlsplit(params.get("redirect_uri", "")).scheme not in ("http", "https"):
            return "A redirect_uri (http or https) is required."
        if params.get("code_challenge") and params.get("code_challenge_method", "plain") != "S256":
            return "Only code_challenge_method=S256 is supported."
        return None

    async def _authorize(self, request: Request) -> Response:
        self.counters.hit("authorize")
        params = await read_params(request)
        problem = self._authorize_problem(params)
        if problem:
            return HTMLResponse(f"<h1>Authorization error</h1><p id='error'>{escape(problem)}</p>", 400)
        if request.method == "GET":
            return self._consent_page(params)
        redirect_uri, state = params["redirect_uri"], params.get("state")
        if params.get("decision") != "allow":
            return RedirectResponse(add_query(redirect_uri, {**self.denied_params(), "state": state}), 302)
        code = self.grants.create_authorization_code(
            client_id=params["client_id"],
            redirect_uri=redirect_uri,
            identity=self.identity_from_form(params),
            scopes=self.parse_scopes(params.get("scope", "")) or self.default_scopes,
            code_challenge=params.get("code_challenge"),
        )
        self.authorization_granted(code, params)
        return RedirectResponse(add_query(redirect_uri, {"code": code, "state": state}), 302)

    def _consent_page(self, params: dict[str, str]) -> HTMLResponse:
        hidden_keys = (
            "client_id",
            "redirect_uri",
            "state",
            "scope",
            "code_challenge",
            "code_challenge_method",
            *self.authorize_passthrough,
        )
        html = _templates.get_template("consent.html").render(
            provider_title=self.provider_title,
            app_name=self.app_name,
            target_description=self.consent_target(),
            identity_summary=self.identity_summary(self.default_identity),
            scopes=self.parse_scopes(params.get("scope", "")),
            action=self.authorize_path,
            hidden={key: params[key] for key in hidden_keys if params.get(key)},
            identity_fields=[
                {"name": key, "label": label, "value": self.default_identity.get(key, "")} for key, label in self.identity_fields
            ],
        )
        return HTMLResponse(html)

    # -- Python fault and inspection API ----------------------------------

    def issue_grant(
        self,
        identity: dict[str, Any] | None = None,
        scopes: list[str] | None = None,
        *,
        access_ttl: int | None = None,
    ) -> TokenSet:
        """Mint tokens directly, as for a user who already completed the OAuth flow."""
        full_identity = {**self.default_identity, **(identity or {})}
        return self.grants.issue_grant(
            full_identity, scopes if scopes is not None else self.default_scopes, access_ttl=access_ttl
        )

    def expire_access_tokens(self, *, token: str | None = None, grant_id: str | None = None) -> int:
        return self.grants.expire_access_tokens(token=token, grant_id=grant_id)

    def end_next_access_tokens_early(self, count: int = 1, *, announced_ttl: int = 86400) -> None:
        self.grants.end_next_access_tokens_early(count, announced_ttl=announced_ttl)

    def revoke(self, *, token: str | None = None, grant_id: str | None = None) -> int:
        return self.grants.revoke(token=token, grant_id=grant_id)

    def deactivate(self, *, token: str | None = None, grant_id: str | None = None) -> int:
        return self.grants.deactivate(token=token, grant_id=grant_id)

    def rate_limit(self, count: int = 1, retry_after: int | None = 1, status: int | None = None) -> None:
        self.faults.rate_limit(count, retry_after, status)

    def fail(self, count: int = 1, status: int = 503, *, after_processing: bool = False, endpoint: str | None = None) -> None:
        self.faults.fail(count, status, after_processing, endpoint)

    def outage(self, seconds: float) -> None:
        self.faults.outage(seconds)

    def token_endpoint_flaky(self, rate: float, seconds: float, seed: int = 0) -> None:
        self.faults.token_endpoint_flaky(rate, seconds, seed)

    def latency(self, seconds: float) -> None:
        self.faults.latency(seconds)

    def token_endpoint_fail(self, count: int = 1, status: int = 503, *, after_processing: bool = False) -> None:
        self.faults.token_endpoint_fail(count, status, after_processing)

    def hang(self, count: int = 1) -> None:
        """The next `count` API requests get no answer at all, until the client gives up."""
        self.faults.answer("hang", count)

    def trickle(self, count: int = 1, interval: float = 0.05) -> None:
        """The next `count` answers send a status line, then one byte every `interval` seconds, never ending."""
        self.faults.answer("trickle", count, interval=interval)

    def gzip_bomb(self, count: int = 1, inflated_bytes: int = 128 * 1024 * 1024) -> None:
        """The next `count` answers are a small gzip body inflating to `inflated_bytes`."""
        self.faults.answer("gzip_bomb", count, size=inflated_bytes)

    def huge_answer(self, count: int = 1, size: int = 200 * 1024 * 1024) -> None:
        """The next `count` answers stream `size` bytes of JSON, chunked, without a Content-Length."""
        self.faults.answer("huge", count, size=size)

    def garble(self, count: int = 1) -> None:
        """The next `count` answers are 200 with JSON cut off mid-way."""
        self.faults.answer("garbled", count)

    def token_endpoint_latency(self, seconds: float) -> None:
        self.faults.token_endpoint_latency(seconds)

    def token_endpoint_answer(
        self,
        count: int = 1,
        *,
        set_fields: dict[str, Any] | None = None,
        drop_fields: tuple[str, ...] = (),
        body: str | None = None,
        after_processing: bool = True,
    ) -> None:
        """Change the next `count` token answers: JSON fields set or dropped, or the whole body replaced (then
        `after_processing=False` answers without processing the request)."""
        self.faults.token_endpoint_answer(count, set_fields, tuple(drop_fields), body, after_processing)

    def token_endpoint_drip(self, count: int = 1, seconds: float = 5.0) -> None:
        self.faults.token_endpoint_drip(count, seconds)

    def reset_connections(self, count: int = 1) -> None:
        self.faults.reset_connections(count)

    def chaos(self, seed: int = 0, **chances: float) -> None:
        """Random faults from now on (see faults.Chaos), rolled by a generator seeded with `seed`; no chances: none."""
        self.faults.chaos(Chaos(seed=seed, **chances) if chances else None)

    def set_reuse_detection(self, enabled: bool) -> None:
        self.grants.reuse_detection = enabled

    def set_access_ttl(self, seconds: int | None) -> None:
        """Lifetime of access tokens minted from now on."""
        self.grants.access_ttl = seconds

    def advance_clock(self, seconds: float) -> None:
        self.grants.advance_clock(seconds)

    def clear_faults(self) -> None:
        self.faults.clear()
        self.grants.forget_early_endings()

    def reset_counters(self) -> None:
        self.counters.reset()

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters.snapshot(),
            "faults": self.faults.snapshot(),
            "reuse_detection": self.grants.reuse_detection,
            "access_ttl": self.grants.access_ttl,
        }

    def apply_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Apply a control-API fault such as ``{"fault": "rate_limit", "count": 2}``."""
        spec = dict(spec)
        name = spec.pop("fault", None)
        handlers = {**self._standard_faults(), **self.extra_faults()}
        if name not in handlers:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(sorted(handlers))}")
        count = spec.get("count", 0)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_FAULT_COUNT:
            # Pending faults are kept one per request: an absurd count would only fill the simulator's memory.
            raise FaultError(f"bad parameters for {name}: count must be a whole number from 0 to {MAX_FAULT_COUNT}")
        try:
            return {"fault": name, **(handlers[name](**spec) or {})}
        except (TypeError, ValueError) as exc:
            raise FaultError(f"bad parameters for {name}: {exc}") from exc

    def _standard_faults(self) -> dict[str, Callable[..., dict[str, Any] | None]]:
        def targeted(action: Callable[..., int], label: str) -> Callable[..., dict[str, Any]]:
            def apply(
                access_token: str | None = None,
                refresh_token: str | None = None,
                token: str | None = None,
                grant_id: str | None = None,
                all: bool = False,
            ) -> dict[str, Any]:
                chosen = token or access_token or refresh_token
                count = action(token=chosen, grant_id=grant_id)
                if count == 0 and (chosen or grant_id):
                    raise LookupError("no grant holds that token or id")
                return {label: count}

            return apply

        # Setting faults return None; apply_fault turns that into an empty result.
        return {
            "expire_access_tokens": targeted(self.expire_access_tokens, "expired"),
            "revoke": targeted(self.revoke, "revoked"),
            "deactivate": targeted(self.deactivate, "deactivated"),
            "rate_limit": lambda count=1, retry_after=1, status=None: self.rate_limit(
                int(count), _optional_int(retry_after), _optional_int(status)
            ),
            "fail": lambda count=1, status=503, after_processing=False, endpoint=None: self.fail(
                int(count),
                int(status),
                after_processing=bool(after_processing),
                endpoint=None if endpoint is None else str(endpoint),
            ),
            "outage": lambda seconds: self.outage(float(seconds)),
            "token_endpoint_flaky": lambda rate, seconds, seed=0: self.token_endpoint_flaky(
                float(rate), float(seconds), int(seed)
            ),
            "latency": lambda seconds: self.latency(float(seconds)),
            "token_endpoint_fail": lambda count=1, status=503, after_processing=False: self.token_endpoint_fail(
                int(count), int(status), after_processing=bool(after_processing)
            ),
            "token_endpoint_latency": lambda seconds: self.token_endpoint_latency(float(seconds)),
            "token_endpoint_answer": lambda count=1, set_fields=None, drop_fields=(), body=None, after_processing=True: (
                self.token_endpoint_answer(
                    int(count),
                    set_fields=dict(set_fields or {}),
                    drop_fields=tuple(drop_fields),
                    body=None if body is None else str(body),
                    after_processing=bool(after_processing),
                )
            ),
            "token_endpoint_drip": lambda count=1, seconds=5.0: self.token_endpoint_drip(int(count), float(seconds)),
            "reset_connections": lambda count=1: self.reset_connections(int(count)),
            "chaos": lambda seed=0, **chances: self.chaos(int(seed), **{k: float(v) for k, v in chances.items()}),
            "hang": lambda count=1: self.hang(int(count)),
            "trickle": lambda count=1, interval=0.05: self.trickle(int(count), float(interval)),
            "gzip_bomb": lambda count=1, inflated_bytes=128 * 1024 * 1024: self.gzip_bomb(int(count), int(inflated_bytes)),
            "huge_answer": lambda count=1, size=200 * 1024 * 1024: self.huge_answer(int(count), int(size)),
            "garble": lambda count=1: self.garble(int(count)),
            "reuse_detection": lambda enabled: self.set_reuse_detection(bool(enabled)),
            "access_ttl": lambda seconds: self.set_access_ttl(_optional_int(seconds)),
            "end_tokens_early": lambda count=1, announced_ttl=86400: self.end_next_access_tokens_early(
                int(count), announced_ttl=int(announced_ttl)
            ),
            "advance_clock": lambda seconds: self.advance_clock(float(seconds)),
            "clear": lambda: self.clear_faults(),
        }

    # -- /_sim/ control API -----------------------------------------------

    def _control_routes(self) -> list[BaseRoute]:
        return [
            Route("/_sim/stats", self._control_stats, methods=["GET"]),
            Route("/_sim/reset", self._control_reset, methods=["POST"]),
            Route("/_sim/grants", self._control_grants, methods=["GET", "POST"]),
            Route("/_sim/faults", self._control_faults, methods=["POST"]),
            *self.extra_control_routes(),
        ]

    @staticmethod
    async def control_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise FaultError(f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise FaultError("body must be a JSON object")
        return body

    async def _control_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _control_reset(self, request: Request) -> Response:
        try:
            body = await self.control_body(request)
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        self.reset_counters()
        if body.get("faults"):
            self.clear_faults()
        return JSONResponse(self.stats())

    async def _control_grants(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"grants": self.grants.grants()})
        try:
            body = await self.control_body(request)
            ttl = body.get("access_ttl")
            tokens = self.issue_grant(
                body.get("identity") or {}, body.get("scopes"), access_ttl=None if ttl is None else int(ttl)
            )
        except (FaultError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(tokens.to_dict(), 201)

    async def _control_faults(self, request: Request) -> Response:
        try:
            return JSONResponse(self.apply_fault(await self.control_body(request)))
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, 404)


def _changed_answer(response: Response, fault: TokenAnswerFault) -> Response:
    if fault.body is not None:
        return Response(fault.body, response.status_code, media_type="text/html")
    try:
        payload = json.loads(bytes(response.body))
    except ValueError:
        return response
    if not isinstance(payload, dict) or response.status_code != 200:
        return response
    for name in fault.drop_fields:
        payload.pop(name, None)
    payload.update(fault.set_fields)
    # allow_nan: an "expires_in" of Infinity goes out as the bare word, as a broken provider would send it.
    return Response(json.dumps(payload, allow_nan=True), 200, media_type="application/json")


class _DroppedConnection(Response):
    """The start of an answer, then the connection is dropped (what a client sees as a reset mid-response)."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": tr', "more_body": True})
        raise ConnectionResetError("simulated connection reset")
