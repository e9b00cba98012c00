"""Simulated Zendesk (one subdomain): JSON token requests, rotation that deletes the previous access and refresh
tokens (with RFC 9700 reuse detection), 401 `invalid_token`, 429 text/plain with Retry-After, tickets with the
`Idempotency-Key` header and cursor pagination.

Modelled on Doorkeeper (the OAuth server Zendesk runs) for error texts where Zendesk documents none.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .base import FaultError, ProviderSimulator, basic_credentials, bearer_token
from .faults import RateLimitFault
from .grants import Grant, TokenCheck, TokenPolicy, TokenStatus

DEFAULT_ZENDESK_IDENTITY = {"user_id": 1900000000001, "name": "Alice Agent", "email": "alice@acme.example", "role": "agent"}
DEFAULT_ZENDESK_SCOPES = ["read", "write"]
IDEMPOTENCY_RETENTION_SECONDS = 2 * 3600
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_PAGE_SIZE = 100
_INVALID_GRANT = (
    "The provided authorization grant is invalid, expired, revoked, does not match the redirection "
    "URI used in the authorization request, or was issued to another client."
)
_INVALID_CLIENT = (
    "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."
)
_INVALID_REQUEST = (
    "The request is missing a required parameter, includes an unsupported parameter value, or is otherwise malformed."
)
_INVALID_TOKEN = "The access token provided is expired, revoked, malformed or invalid for other reasons."
_RATE_LIMIT_TEXT = "Number of allowed API requests per minute exceeded"
_PRIORITIES = ("low", "normal", "high", "urgent")
_TYPES = ("problem", "incident", "question", "task")
_SORTS = {
    "id": ("id", False),
    "-id": ("id", True),
    "updated_at": ("updated_at", False),
    "-updated_at": ("updated_at", True),
    "status": ("status", False),
    "-status": ("status", True),
}


def zendesk_error(error: str, description: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "description": description, **extra}, status)


def oauth_error(error: str, description: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_cursor(sort: str, ticket: dict[str, Any]) -> str:
    field_name, _ = _SORTS[sort]
    raw = json.dumps({"s": sort, "v": ticket[field_name], "id": ticket["id"]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    if not isinstance(data, dict) or data.get("s") not in _SORTS or "id" not in data:
        raise ValueError("bad cursor")
    return data


@dataclass(frozen=True)
class _Replay:
    fingerprint: str
    status: int
    body: bytes
    stored_at: float


class RateWindow:
    """Zendesk's per-minute request budget per account (X-Rate-Limit / X-Rate-Limit-Remaining)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._started = 0.0
        self._used = 0

    def take(self, now: float) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds until the window resets)."""
        with self._lock:
            if now >= self._started + 60:
                self._started, self._used = now, 0
            allowed = self._used < self.per_minute
            self._used += allowed
            return allowed, self.per_minute - self._used, max(1, int(self._started + 60 - now))

    def reset(self) -> None:
        with self._lock:
            self._started, self._used = 0.0, 0


class ZendeskSimulator(ProviderSimulator):
    provider_title = "Zendesk"
    token_path = "/oauth/tokens"
    authorize_path = "/oauth/authorizations/new"
    identity_fields = (("email", "Email"), ("name", "Name"), ("user_id", "User ID"))

    def __init__(
        self,
        *,
        client_id: str = "sim-zendesk-client",
        client_secret: str = "sim-zendesk-secret",
        app_name: str = "Grantkeeper Sim",
        subdomain: str = "acme",
        default_identity: dict[str, Any] | None = None,
        default_scopes: list[str] | None = None,
        access_ttl: int = 1800,
        refresh_ttl: int = 30 * 24 * 3600,
        reuse_detection: bool = True,
        accept_form_token_requests: bool = False,
        requests_per_minute: int = 700,
        seed: bool = True,
    ) -> None:
        self.subdomain = subdomain
        # Zendesk documents JSON for /oauth/tokens; whether it also reads a form body is not documented.
        self.accept_form_token_requests = accept_form_token_requests
        self.rate = RateWindow(requests_per_minute)
        self.token_request_formats: list[str] = []  # "json" | "form" | "other", one per token request
        self._tickets: list[dict[str, Any]] = []
        self._next_ticket_id = 35436
        self._replays: dict[str, _Replay] = {}
        self._idempotency = {"hits": 0, "misses": 0, "mismatches": 0}
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            app_name=app_name,
            default_identity=default_identity or DEFAULT_ZENDESK_IDENTITY,
            default_scopes=default_scopes or DEFAULT_ZENDESK_SCOPES,
            policy=TokenPolicy(
                access_prefix="",
                refresh_prefix="",
                access_length=64,
                refresh_length=64,
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
                # "delete the previous access and refresh tokens"
                rotation_kills_access_token=True,
                code_factory=lambda: secrets.token_hex(16),
            ),
            reuse_detection=reuse_detection,
        )
        if seed:
            self.add_ticket("Printer on fire", "The office printer is on fire again.", status="open", priority="urgent")
            self.add_ticket("Cannot log in", "Password reset mail never arrives.", status="pending")

    # -- data -------------------------------------------------------------

    def _base_url(self, request: Request | None = None) -> str:
        return str(request.base_url).rstrip("/") if request else f"https://{self.subdomain}.zendesk.com"

    def add_ticket(
        self,
        subject: str | None,
        description: str,
        *,
        requester: dict[str, Any] | None = None,
        status: str = "new",
        priority: str | None = None,
        ticket_type: str | None = None,
        tags: list[str] | None = None,
        public: bool = True,
        external_id: str | None = None,
        base_url: str | None = None,
    ) -> dict[str, Any]:
        """Add a ticket directly (seeding); also used by the API handler."""
        user = requester or self.default_identity
        now = self.grants.now()
        with self._data_lock:
            ticket_id, self._next_ticket_id = self._next_ticket_id, self._next_ticket_id + 1
            base = (base_url or self._base_url()).rstrip("/")
            ticket = {
                "url": f"{base}/api/v2/tickets/{ticket_id}.json",
                "id": ticket_id,
                "external_id": external_id,
                "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
                "created_at": _iso(now),
                "updated_at": _iso(now),
                "generated_timestamp": int(now),
                "type": ticket_type,
                "subject": subject or description[:60],
                "raw_subject": subject or description[:60],
                "description": description,
                "priority": priority,
                "status": status,
                "recipient": None,
                "requester_id": user.get("user_id"),
                "submitter_id": user.get("user_id"),
                "assignee_id": None,
                "organization_id": None,
                "group_id": None,
                "collaborator_ids": [],
                "follower_ids": [],
                "email_cc_ids": [],
                "problem_id": None,
                "has_incidents": False,
                "is_public": public,
                "due_at": None,
                "tags": sorted(set(tags or [])),
                "custom_fields": [],
                "satisfaction_rating": None,
                "sharing_agreement_ids": [],
                "allow_channelback": False,
                "allow_attachments": True,
            }
            self._tickets.append(ticket)
            return copy.deepcopy(ticket)

    def tickets(self) -> list[dict[str, Any]]:
        with self._data_lock:
            return copy.deepcopy(self._tickets)

    def idempotency_stats(self) -> dict[str, int]:
        with self._data_lock:
            return dict(self._idempotency)

    # -- OAuth ------------------------------------------------------------

    def consent_target(self) -> str:
        return f"the Zendesk account {self.subdomain}.zendesk.com"

    def identity_from_form(self, form: dict[str, str]) -> dict[str, Any]:
        identity = super().identity_from_form(form)
        try:
            identity["user_id"] = int(identity["user_id"])
        except (TypeError, ValueError):
            identity["user_id"] = self.default_identity["user_id"]
        return identity

    def identity_summary(self, identity: dict[str, Any]) -> str:
        return f"{identity.get('name')} <{identity.get('email')}> (user {identity.get('user_id')})"

    def denied_params(self) -> dict[str, str]:
        return {"error": "access_denied", "error_description": "The resource owner or authorization server denied the request."}

    async def token_endpoint(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        raw = await request.body()
        params: dict[str, Any]
        body_format = (
            "json"
            if content_type.startswith("application/json")
            else "form"
            if content_type.startswith("application/x-www-form-urlencoded")
            else "other"
        )
        with self._data_lock:
            self.token_request_formats.append(body_format)
        if body_format == "json":
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                return oauth_error("invalid_request", _INVALID_REQUEST, 400)
            if not isinstance(params, dict):
                return oauth_error("invalid_request", _INVALID_REQUEST, 400)
        elif body_format == "form":
            if not self.accept_form_token_requests:
                return oauth_error("invalid_request", _INVALID_REQUEST, 400)
            params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        else:
            return oauth_error("invalid_request", _INVALID_REQUEST, 400)
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        client_id, client_secret = basic_credentials(request) or (params.get("client_id"), params.get("client_secret"))
        if not self.client_authenticated(client_id, client_secret):
            return oauth_error("invalid_client", _INVALID_CLIENT, 401)
        grant_type = params.get("grant_type")
        if grant_type == "refresh_token":
            presented = params.get("refresh_token")
            result = self.grants.refresh(presented)
            self.log_grant_event("refresh", result, presented)
        elif grant_type == "authorization_code":
            result = self.grants.redeem_authorization_code(
                params.get("code"),
                client_id=client_id or "",
                redirect_uri=params.get("redirect_uri"),
                code_verifier=params.get("code_verifier"),
            )
            self.log_grant_event("code exchange", result)
        else:
            return oauth_error(
                "unsupported_grant_type", "The authorization grant type is not supported by the authorization server.", 400
            )
        if not result.ok:
            return oauth_error("invalid_grant", _INVALID_GRANT, 400)
        tokens = result.tokens
        assert tokens is not None
        payload = {
            "access_token": tokens.access_token,
            "token_type": "bearer",
            "scope": " ".join(tokens.scopes),
            "expires_in": tokens.expires_in,
            "refresh_token": tokens.refresh_token,
            "refresh_token_expires_in": tokens.refresh_token_expires_in,
        }
        return JSONResponse(
            {k: v for k, v in payload.items() if v is not None}, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    # -- API pipeline hooks ------------------------------------------------

    def auth_error_response(self, check: TokenCheck) -> Response:
        if check.status is TokenStatus.MISSING:
            return JSONResponse({"error": "Couldn't authenticate you"}, 401)
        if check.status is TokenStatus.INACTIVE:
            # A suspended user: the token is fine, the person may not act [U: Zendesk's exact answer].
            return zendesk_error(
                "Forbidden",
                "You do not have access to this page. Please contact the account owner of this help desk for further help.",
                403,
            )
        response = oauth_error("invalid_token", _INVALID_TOKEN, 401)
        response.headers["WWW-Authenticate"] = (
            f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{_INVALID_TOKEN}"'
        )
        return response

    def _limited(self, retry_after: int) -> Response:
        return Response(_RATE_LIMIT_TEXT, status_code=429, media_type="text/plain", headers={"Retry-After": str(retry_after)})

    def rate_limited_response(self, request: Request, fault: RateLimitFault, check: TokenCheck) -> Response:
        response = self._limited(fault.retry_after if fault.retry_after is not None else 60)
        if fault.status and fault.status != 429:
            response.status_code = fault.status
        return response

    def server_error_response(self, status: int) -> Response:
        if status == 503:
            return Response("Service Unavailable", status_code=503, media_type="text/plain")
        return zendesk_error("InternalError", "Something went wrong", status)

    def admit(self, request: Request, endpoint: str, check: TokenCheck) -> Response | None:
        allowed, remaining, resets = self.rate.take(self.grants.now())
        request.state.rate = (remaining, resets)
        if allowed:
            return None
        self.counters.incr("rate_limited")
        return self._limited(resets)

    def finish_api_response(self, request: Request, endpoint: str, check: TokenCheck, response: Response) -> Response:
        remaining, _ = getattr(request.state, "rate", (self.rate.per_minute, 60))
        response.headers["X-Rate-Limit"] = str(self.rate.per_minute)
        response.headers["X-Rate-Limit-Remaining"] = str(max(0, remaining))
        response.headers["X-Zendesk-API-Version"] = "v2"
        return response

    # -- API --------------------------------------------------------------

    def api_routes(self) -> list[BaseRoute]:
        def route(path: str, methods: list[str], name: str, handler: Any) -> list[Route]:
            async def endpoint(request: Request) -> Response:
                return await self.api_call(request, name, handler)

            # Zendesk answers with and without the .json suffix.
            return [Route(path, endpoint, methods=methods), Route(path + ".json", endpoint, methods=methods)]

        return [
            *route("/api/v2/users/me", ["GET"], "GET /users/me", self._me),
            *route("/api/v2/tickets", ["POST"], "POST /tickets", self._create_ticket),
            *route("/api/v2/tickets", ["GET"], "GET /tickets", self._list_tickets),
            *route("/api/v2/tickets/{ticket_id:int}", ["GET"], "GET /tickets/{id}", self._get_ticket),
        ]

    @staticmethod
    def _needs_write(grant: Grant) -> Response | None:
        if {"write", "tickets:write"} & set(grant.scopes):
            return None
        return zendesk_error(
            "Forbidden",
            "You do not have access to this page. Please contact the account owner of this help desk for further help.",
            403,
        )

    async def _me(self, request: Request, grant: Grant) -> Response:
        identity = grant.identity
        user_id = identity.get("user_id")
        return JSONResponse(
            {
                "user": {
                    "id": user_id,
                    "url": f"{self._base_url(request)}/api/v2/users/{user_id}.json",
                    "name": identity.get("name"),
                    "email": identity.get("email"),
                    "role": identity.get("role", "agent"),
                    "active": True,
                    "verified": True,
                    "suspended": False,
                    "time_zone": "UTC",
                    "locale": "en-US",
                    "created_at": "2020-01-02T03:04:05Z",
                }
            }
        )

    async def _create_ticket(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._needs_write(grant)) is not None:
            return refusal
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return zendesk_error("InvalidJSON", "The request body is not valid JSON.", 400)
        key = request.headers.get("idempotency-key")
        if key is not None:
            if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
                return zendesk_error("InvalidIdempotencyKey", "The idempotency key is empty or too long.", 400)
            replay = self._replay(key, body)
            if replay is not None:
                return replay
        response = self._create_ticket_from(request, grant, body)
        if key is not None:
            self._remember(key, body, response)
            response.headers["x-idempotency-lookup"] = "miss"
        return response

    def _replay(self, key: str, body: Any) -> Response | None:
        now = self.grants.now()
        with self._data_lock:
            stored = self._replays.get(key)
            if stored is not None and now - stored.stored_at >= IDEMPOTENCY_RETENTION_SECONDS:
                del self._replays[key]
                stored = None
            if stored is None:
                self._idempotency["misses"] += 1
                return None
            if stored.fingerprint != _fingerprint(body):
                self._idempotency["mismatches"] += 1
                return zendesk_error("IdempotentRequestError", "Request parameters don't match the given idempotency key", 400)
            self._idempotency["hits"] += 1
            return Response(
                stored.body, status_code=stored.status, media_type="application/json", headers={"x-idempotency-lookup": "hit"}
            )

    def _remember(self, key: str, body: Any, response: Response) -> None:
        # Only a ticket that was created is replayed; a refused request may be corrected and sent again. [U]
        if 200 <= response.status_code < 300:
            with self._data_lock:
                self._replays[key] = _Replay(_fingerprint(body), response.status_code, bytes(response.body), self.grants.now())

    def _create_ticket_from(self, request: Request, grant: Grant, body: Any) -> Response:
        ticket = body.get("ticket") if isinstance(body, dict) else None
        if not isinstance(ticket, dict):
            return zendesk_error("InvalidJSON", "Parameter 'ticket' is required.", 400)
        given_comment = ticket.get("comment")
        comment: dict[str, Any] = given_comment if isinstance(given_comment, dict) else {}
        description = str(comment.get("body") or comment.get("html_body") or ticket.get("description") or "")
        problems: dict[str, list[dict[str, str]]] = {}
        if not description.strip():
            problems["description"] = [{"description": "Description: cannot be blank", "error": "BlankValue"}]
        if ticket.get("priority") is not None and ticket["priority"] not in _PRIORITIES:
            problems["priority"] = [{"description": "Priority: is not valid", "error": "InvalidValue"}]
        if ticket.get("type") is not None and ticket["type"] not in _TYPES:
            problems["type"] = [{"description": "Type: is not valid", "error": "InvalidValue"}]
        if problems:
            return zendesk_error("RecordInvalid", "Record validation errors", 422, details=problems)
        created = self.add_ticket(
            ticket.get("subject"),
            description,
            requester=grant.identity,
            priority=ticket.get("priority"),
            ticket_type=ticket.get("type"),
            tags=[str(t) for t in ticket.get("tags") or []],
            public=bool(comment.get("public", True)),
            external_id=ticket.get("external_id"),
            base_url=self._base_url(request),
        )
        audit = {
            "id": secrets.randbits(40),
            "ticket_id": created["id"],
            "created_at": created["created_at"],
            "author_id": grant.identity.get("user_id"),
            "metadata": {"system": {"client": "grantkeeper"}},
            "events": [
                {
                    "id": secrets.randbits(40),
                    "type": "Comment",
                    "body": description,
                    "public": created["is_public"],
                    "author_id": grant.identity.get("user_id"),
                }
            ],
        }
        return JSONResponse({"ticket": created, "audit": audit}, 201, headers={"location": created["url"]})

    async def _get_ticket(self, request: Request, grant: Grant) -> Response:
        with self._data_lock:
            ticket = next((copy.deepcopy(t) for t in self._tickets if t["id"] == request.path_params["ticket_id"]), None)
        if ticket is None:
            return zendesk_error("RecordNotFound", "Not found", 404)
        return JSONResponse({"ticket": ticket})

    async def _list_tickets(self, request: Request, grant: Grant) -> Response:
        query = request.query_params
        sort = query.get("sort", "id")
        if sort not in _SORTS:
            return zendesk_error("InvalidPaginationParameter", f"sort is not valid: {sort}", 400)
        field_name, descending = _SORTS[sort]
        with self._data_lock:
            tickets = sorted(copy.deepcopy(self._tickets), key=lambda t: (t[field_name], t["id"]), reverse=descending)
        if query.get("page[size]") is None:
            return self._offset_page(request, tickets)
        try:
            size = int(query["page[size]"])
        except ValueError:
            return zendesk_error("InvalidPaginationParameter", "page[size] is not a number", 400)
        if not 1 <= size <= MAX_PAGE_SIZE:
            return zendesk_error("InvalidPaginationParameter", f"page[size] must be between 1 and {MAX_PAGE_SIZE}", 400)
        after = query.get("page[after]")
        if after:
            try:
                cursor = decode_cursor(after)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return zendesk_error("InvalidPaginationParameter", "page[after] is not a valid cursor", 400)
            if cursor["s"] != sort:
                return zendesk_error("InvalidPaginationParameter", "the cursor belongs to another sort order", 400)
            mark = (cursor["v"], cursor["id"])
            tickets = [t for t in tickets if ((t[field_name], t["id"]) < mark if descending else (t[field_name], t["id"]) > mark)]
        page, rest = tickets[:size], tickets[size:]
        base = f"{self._base_url(request)}/api/v2/tickets.json?page[size]={size}"
        after_cursor = encode_cursor(sort, page[-1]) if page else None
        before_cursor = encode_cursor(sort, page[0]) if page else None
        return JSONResponse(
            {
                "tickets": page,
                "meta": {"has_more": bool(rest), "after_cursor": after_cursor, "before_cursor": before_cursor},
                "links": {
                    "next": f"{base}&page[after]={after_cursor}" if rest else None,
                    "prev": f"{base}&page[before]={before_cursor}" if after and page else None,
                },
            }
        )

    def _offset_page(self, request: Request, tickets: list[dict[str, Any]]) -> Response:
        try:
            per_page = min(max(int(request.query_params.get("per_page", 100)), 1), 100)
            page = max(int(request.query_params.get("page", 1)), 1)
        except ValueError:
            return zendesk_error("InvalidPaginationParameter", "page and per_page must be numbers", 400)
        chunk = tickets[(page - 1) * per_page : page * per_page]
        base = f"{self._base_url(request)}/api/v2/tickets.json?per_page={per_page}"
        has_next = page * per_page < len(tickets)
        return JSONResponse(
            {
                "tickets": chunk,
                "count": len(tickets),
                "next_page": f"{base}&page={page + 1}" if has_next else None,
                "previous_page": f"{base}&page={page - 1}" if page > 1 else None,
            }
        )

    # -- control API extras ------------------------------------------------

    def extra_faults(self) -> dict[str, Any]:
        return {
            "requests_per_minute": lambda limit: setattr(self.rate, "per_minute", max(0, int(limit))),
            "accept_form_token_requests": lambda enabled: setattr(self, "accept_form_token_requests", bool(enabled)),
        }

    def reset_counters(self) -> None:
        super().reset_counters()
        self.rate.reset()
        with self._data_lock:
            self._idempotency = {"hits": 0, "misses": 0, "mismatches": 0}
            self.token_request_formats.clear()

    def stats(self) -> dict[str, Any]:
        with self._data_lock:
            formats = {fmt: self.token_request_formats.count(fmt) for fmt in set(self.token_request_formats)}
            tickets = len(self._tickets)
        return {
            **super().stats(),
            "idempotency": self.idempotency_stats(),
            "token_request_formats": formats,
            "tickets": tickets,
            "requests_per_minute": self.rate.per_minute,
        }

    def revocation_routes(self) -> list[BaseRoute]:
        return [
            Route(path, self._delete_current_token, methods=["DELETE"])
            for path in ("/api/v2/oauth/tokens/current", "/api/v2/oauth/tokens/current.json")
        ]

    async def _delete_current_token(self, request: Request) -> Response:
        """DELETE /api/v2/oauth/tokens/current.json: the token making the request is revoked. 204; 401 otherwise."""
        self.counters.hit("DELETE /oauth/tokens/current")
        if (fault := self.revocation_fault("DELETE /oauth/tokens/current")) is not None:
            return fault
        token = bearer_token(request)
        if not self.grants.check_access_token(token).ok:
            return JSONResponse({"error": "invalid_token", "error_description": _INVALID_TOKEN}, status_code=401)
        self.grants.end_by_client(token)
        return Response(status_code=204)

    def extra_control_routes(self) -> list[BaseRoute]:
        return [Route("/_sim/tickets", self._control_tickets, methods=["GET", "POST"])]

    async def _control_tickets(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"tickets": self.tickets()})
        try:
            body = await self.control_body(request)
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        if not body.get("description") and not body.get("subject"):
            return JSONResponse({"error": "subject or description is required"}, 400)
        ticket = self.add_ticket(
            body.get("subject"),
            body.get("description") or body["subject"],
            status=body.get("status", "new"),
            priority=body.get("priority"),
            tags=body.get("tags"),
            base_url=self._base_url(request),
        )
        return JSONResponse(ticket, 201)
