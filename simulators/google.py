"""Simulated Google OAuth + Gmail + Calendar for one grant: refresh tokens are *not* rotated (using the same one
again is normal), access tokens live 3599 s, apps in "Testing" get refresh tokens that die after 7 days.

Errors follow Google: 400 `invalid_grant` "Token has been expired or revoked." at the token endpoint, 401 with
Google's JSON error (and `WWW-Authenticate`) for any dead access token, 403/429 `usageLimits` without Retry-After
for rate limits, 409 `duplicate` for a Calendar event id that already exists.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import secrets
import shlex
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from email import message_from_bytes, policy
from email.utils import format_datetime, getaddresses
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .base import FaultError, ProviderSimulator, basic_credentials, read_params
from .faults import RateLimitFault
from .grants import Grant, GrantFailure, TokenCheck, TokenPolicy, TokenStatus

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"
CALENDAR_EVENTS = "https://www.googleapis.com/auth/calendar.events"
DEFAULT_GOOGLE_IDENTITY = {"email": "alice@example.com", "sub": "109876543210987654321", "name": "Alice Example"}
DEFAULT_GOOGLE_SCOPES = [GMAIL_READONLY, GMAIL_SEND, CALENDAR_EVENTS]
TESTING_REFRESH_TTL = 7 * 24 * 3600

# Scopes that allow each kind of call (any one suffices), as on developers.google.com.
_MAIL = "https://mail.google.com/"
_GMAIL_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
_CALENDAR = "https://www.googleapis.com/auth/calendar"
_SCOPES_FOR = {
    "gmail.read": {GMAIL_READONLY, _GMAIL_MODIFY, _MAIL},
    "gmail.send": {GMAIL_SEND, "https://www.googleapis.com/auth/gmail.compose", _GMAIL_MODIFY, _MAIL},
    "calendar.read": {
        CALENDAR_EVENTS,
        _CALENDAR,
        "https://www.googleapis.com/auth/calendar.readonly",
        "https://www.googleapis.com/auth/calendar.events.readonly",
    },
    "calendar.write": {CALENDAR_EVENTS, _CALENDAR},
}
# Gmail quota units per method (developers.google.com/gmail/api/reference/quota).
_GMAIL_UNITS = {"profile": 1, "messages.list": 5, "messages.get": 5, "messages.send": 100}
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_AUTH_REQUIRED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
    "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_MISSING_CREDENTIALS_MESSAGE = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_API_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def google_error(
    code: int, message: str, reason: str, domain: str = "global", *, status: str | None = None, **item: Any
) -> JSONResponse:
    """Google's JSON error envelope (v1 `errors[]` plus the v2 `status`)."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason, **item}],
    }
    api_status = status if status is not None else _API_STATUS.get(code)
    if api_status:
        error["status"] = api_status
    return JSONResponse({"error": error}, code)


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _parse_rfc3339(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("no UTC offset")
    return moment


def _event_bound(value: Any) -> datetime | None:
    """The instant an event's start/end stands for; all-day dates count from midnight UTC."""
    if not isinstance(value, dict):
        return None
    if value.get("dateTime"):
        return _parse_rfc3339(str(value["dateTime"]))
    if value.get("date"):
        return datetime.combine(date.fromisoformat(str(value["date"])), time(0), UTC)
    return None


def _b64url_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    text = _b64url_decode(token).decode()
    if not text.startswith("offset:"):
        raise ValueError("bad page token")
    return max(0, int(text.removeprefix("offset:")))


@dataclass
class MailMessage:
    message_id: str
    thread_id: str
    label_ids: list[str]
    headers: list[dict[str, str]]
    body: str
    internal_date: int  # milliseconds since the epoch

    def header(self, name: str) -> str:
        return next((h["value"] for h in self.headers if h["name"].lower() == name.lower()), "")

    @property
    def snippet(self) -> str:
        return " ".join(self.body.split())[:200]

    def to_json(self, fmt: str, wanted_headers: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.message_id,
            "threadId": self.thread_id,
            "labelIds": list(self.label_ids),
            "snippet": self.snippet,
            "sizeEstimate": len(self.body) + 300,
            "historyId": str(1000 + int(self.internal_date // 1000) % 100000),
            "internalDate": str(self.internal_date),
        }
        if fmt == "minimal":
            return result
        headers = self.headers
        if fmt == "metadata":
            if wanted_headers:
                wanted = {h.lower() for h in wanted_headers}
                headers = [h for h in headers if h["name"].lower() in wanted]
            result["payload"] = {"partId": "", "mimeType": "text/plain", "filename": "", "headers": copy.deepcopy(headers)}
            return result
        result["payload"] = {
            "partId": "",
            "mimeType": "text/plain",
            "filename": "",
            "headers": copy.deepcopy(headers),
            "body": {"size": len(self.body.encode()), "data": base64.urlsafe_b64encode(self.body.encode()).decode().rstrip("=")},
        }
        return result


@dataclass
class MailSearch:
    """The subset of Gmail's search syntax the simulator understands."""

    senders: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    terms: list[str] = field(default_factory=list)

    _OPERATOR = re.compile(r"^(from|to|subject|in|label|is):(.+)$", re.IGNORECASE)

    @classmethod
    def parse(cls, q: str) -> MailSearch:
        try:
            tokens = shlex.split(q)
        except ValueError:
            tokens = q.replace('"', " ").split()
        search = cls()
        for token in tokens:
            match = cls._OPERATOR.match(token)
            if match is None:
                search.terms.append(token.lower())
                continue
            key, value = match.group(1).lower(), match.group(2).lower()
            if key == "from":
                search.senders.append(value)
            elif key == "to":
                search.recipients.append(value)
            elif key == "subject":
                search.subjects.append(value)
            elif key == "is" and value in ("read", "unread", "starred", "important"):
                search.labels.add("-unread" if value == "read" else value.upper())
            else:
                search.labels.add(value.upper())
        return search

    def matches(self, message: MailMessage) -> bool:
        labels = set(message.label_ids)
        for label in self.labels:
            if label == "-unread":
                if "UNREAD" in labels:
                    return False
            elif label not in labels:
                return False
        if not self.labels & {"SENT", "TRASH", "SPAM", "ANYWHERE"} and ({"TRASH", "SPAM"} & labels):
            return False  # like Gmail, trash and spam are left out unless asked for
        fields = {
            "from": message.header("From").lower(),
            "to": (message.header("To") + " " + message.header("Cc")).lower(),
            "subject": message.header("Subject").lower(),
        }
        if not all(s in fields["from"] for s in self.senders):
            return False
        if not all(r in fields["to"] for r in self.recipients):
            return False
        if not all(s in fields["subject"] for s in self.subjects):
            return False
        haystack = " ".join([*fields.values(), message.body.lower()])
        return all(term in haystack for term in self.terms)


class QuotaWindow:
    """Gmail's per-user quota: units per rolling minute (a fixed window is close enough here)."""

    def __init__(self, units_per_minute: int) -> None:
        self.units_per_minute = units_per_minute
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def charge(self, user: str, units: int, now: float) -> bool:
        with self._lock:
            started, used = self._windows.get(user, (now, 0))
            if now >= started + 60:
                started, used = now, 0
            if used + units > self.units_per_minute:
                self._windows[user] = (started, used)
                return False
            self._windows[user] = (started, used + units)
            return True

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


class GoogleSimulator(ProviderSimulator):
    provider_title = "Google"
    token_path = "/token"
    authorize_path = "/o/oauth2/v2/auth"
    identity_fields = (("email", "Email"), ("name", "Name"), ("sub", "Account ID"))
    authorize_passthrough = ("access_type", "prompt", "include_granted_scopes", "login_hint")

    def __init__(
        self,
        *,
        client_id: str = "sim-google-client",
        client_secret: str = "sim-google-secret",
        app_name: str = "Grantkeeper Sim",
        default_identity: dict[str, Any] | None = None,
        default_scopes: list[str] | None = None,
        access_ttl: int = 3599,
        publishing_status: Literal["production", "testing"] = "production",
        rate_limit_status: int = 403,
        user_quota_per_minute: int = 15000,
        seed: bool = True,
    ) -> None:
        self.rate_limit_status = rate_limit_status
        self.quota = QuotaWindow(user_quota_per_minute)
        self._mailboxes: dict[str, list[MailMessage]] = {}
        self._calendars: dict[str, dict[str, dict[str, Any]]] = {}
        self._consented: set[str] = set()  # identities that already granted offline access to this client
        self._codes_with_refresh: dict[str, bool] = {}
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            app_name=app_name,
            default_identity=default_identity or DEFAULT_GOOGLE_IDENTITY,
            default_scopes=default_scopes or DEFAULT_GOOGLE_SCOPES,
            policy=TokenPolicy(
                access_prefix="ya29.a0",
                refresh_prefix="1//0",
                access_length=160,
                refresh_length=100,
                access_ttl=access_ttl,
                refresh_ttl=TESTING_REFRESH_TTL if publishing_status == "testing" else None,
                rotation_kills_access_token=False,
                rotates_refresh_token=False,
                code_factory=lambda: "4/0" + secrets.token_urlsafe(54),
            ),
            reuse_detection=False,  # nothing to detect: the same refresh token is meant to be used again
        )
        self.publishing_status = publishing_status
        if seed:
            self._seed()

    def _seed(self) -> None:
        owner = self.default_identity["email"]
        for sender, subject, body, labels in [
            (
                "Bob Builder <bob@example.com>",
                "Quarterly report",
                "The Q3 numbers are attached. Revenue is up 12%.",
                ["INBOX", "UNREAD"],
            ),
            ("Carol <carol@example.org>", "Lunch on Friday?", "Shall we try the new ramen place at noon?", ["INBOX"]),
            (
                "Dependabot <noreply@github.com>",
                "Security alert: urllib3",
                "A moderate severity advisory affects urllib3 in acme/webshop.",
                ["INBOX", "UNREAD", "CATEGORY_UPDATES"],
            ),
        ]:
            self.seed_message(owner, sender=sender, subject=subject, body=body, labels=labels)

    # -- data -------------------------------------------------------------

    def seed_message(
        self, mailbox: str, *, sender: str, subject: str, body: str, to: str | None = None, labels: list[str] | None = None
    ) -> dict[str, Any]:
        """Put a message in a mailbox without the API (an incoming mail)."""
        now = self.grants.now()
        headers = [
            {"name": "From", "value": sender},
            {"name": "To", "value": to or mailbox},
            {"name": "Subject", "value": subject},
            {"name": "Date", "value": format_datetime(datetime.fromtimestamp(now, UTC))},
            {"name": "Message-ID", "value": f"<{secrets.token_hex(8)}@mail.example>"},
        ]
        with self._data_lock:
            message = MailMessage(
                self._new_message_id(),
                "",
                list(labels or ["INBOX"]),
                headers,
                body,
                int(now * 1000) + len(self._mailbox(mailbox)),
            )
            message.thread_id = message.message_id
            self._mailbox(mailbox).append(message)
            return message.to_json("full", [])

    def _new_message_id(self) -> str:
        return secrets.token_hex(8)

    def _mailbox(self, email: str) -> list[MailMessage]:
        return self._mailboxes.setdefault(email.lower(), [])

    def messages(self, mailbox: str | None = None) -> list[dict[str, Any]]:
        """Every message of a mailbox (the default user's unless named), newest first, in Gmail's full format."""
        with self._data_lock:
            box = self._mailbox(mailbox or self.default_identity["email"])
            return [m.to_json("full", []) for m in sorted(box, key=lambda m: m.internal_date, reverse=True)]

    def sent_messages(self, mailbox: str | None = None) -> list[dict[str, Any]]:
        """What the API sent from a mailbox: headers and plain-text body, oldest first."""
        with self._data_lock:
            box = self._mailbox(mailbox or self.default_identity["email"])
            return [
                {
                    "id": m.message_id,
                    "from": m.header("From"),
                    "to": m.header("To"),
                    "cc": m.header("Cc"),
                    "subject": m.header("Subject"),
                    "body": m.body,
                }
                for m in box
                if "SENT" in m.label_ids
            ]

    def events(self, calendar: str | None = None) -> list[dict[str, Any]]:
        with self._data_lock:
            stored = self._calendars.get((calendar or self.default_identity["email"]).lower(), {})
            return [copy.deepcopy(e) for e in stored.values()]

    def set_publishing_status(self, status: Literal["production", "testing"]) -> None:
        """'testing' gives refresh tokens issued from now on a 7-day life, as for unverified apps."""
        if status not in ("production", "testing"):
            raise ValueError("publishing status is 'production' or 'testing'")
        self.publishing_status = status
        self.grants.policy = replace(self.grants.policy, refresh_ttl=TESTING_REFRESH_TTL if status == "testing" else None)

    def set_user_quota(self, units_per_minute: int) -> None:
        self.quota.units_per_minute = max(0, units_per_minute)

    # -- OAuth ------------------------------------------------------------

    def consent_target(self) -> str:
        return "your Google Account (Gmail and Calendar)"

    def identity_summary(self, identity: dict[str, Any]) -> str:
        return f"{identity.get('name')} <{identity.get('email')}>"

    def authorization_granted(self, code: str, params: dict[str, str]) -> None:
        # A refresh token comes only with access_type=offline, and only on the first consent of this user to
        # this client unless prompt=consent asks for it again.
        email = str(self.identity_from_form(params).get("email", "")).lower()
        offline = params.get("access_type") == "offline"
        with self._data_lock:
            first = email not in self._consented
            self._codes_with_refresh[code] = offline and (first or "consent" in params.get("prompt", "").split())
            if offline:
                self._consented.add(email)

    async def token_endpoint(self, request: Request) -> Response:
        params = await read_params(request)
        client_id, client_secret = basic_credentials(request) or (params.get("client_id"), params.get("client_secret"))
        if not client_id:
            return oauth_error("invalid_request", "Could not determine client ID from request.")
        if not self.client_authenticated(client_id, client_secret):
            return oauth_error("invalid_client", "Unauthorized", 401)
        grant_type = params.get("grant_type")
        include_refresh = False
        if grant_type == "refresh_token":
            presented = params.get("refresh_token")
            result = self.grants.refresh(presented)
            self.log_grant_event("refresh", result, presented)
            if not result.ok:
                if result.failure is GrantFailure.INACTIVE:
                    return oauth_error("invalid_grant", "Account has been deleted")
                return oauth_error("invalid_grant", "Token has been expired or revoked.")
        elif grant_type == "authorization_code":
            code = params.get("code")
            result = self.grants.redeem_authorization_code(
                code,
                client_id=client_id,
                redirect_uri=params.get("redirect_uri"),
                code_verifier=params.get("code_verifier"),
            )
            self.log_grant_event("code exchange", result)
            if not result.ok:
                if result.failure is GrantFailure.REDIRECT_MISMATCH:
                    return oauth_error("redirect_uri_mismatch", "Bad Request")
                return oauth_error("invalid_grant", "Bad Request")
            with self._data_lock:
                include_refresh = self._codes_with_refresh.pop(code or "", False)
        elif not grant_type:
            return oauth_error("unsupported_grant_type", "Invalid grant_type: ")
        else:
            return oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        tokens = result.tokens
        assert tokens is not None
        payload: dict[str, Any] = {
            "access_token": tokens.access_token,
            "expires_in": tokens.expires_in,
            "scope": " ".join(tokens.scopes),
            "token_type": "Bearer",
        }
        if include_refresh:
            payload["refresh_token"] = tokens.refresh_token
            if tokens.refresh_token_expires_in is not None:
                payload["refresh_token_expires_in"] = tokens.refresh_token_expires_in
        # A refresh answers without refresh_token: the client keeps the one it has (it is not rotated).
        return JSONResponse(
            {k: v for k, v in payload.items() if v is not None}, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    # -- API pipeline hooks ------------------------------------------------

    def auth_error_response(self, check: TokenCheck) -> Response:
        if check.status is TokenStatus.MISSING:
            response = google_error(
                401, _MISSING_CREDENTIALS_MESSAGE, "required", location="Authorization", locationType="header"
            )
        else:
            # Expired, revoked, unknown: Google says the same thing for all of them.
            response = google_error(401, _AUTH_REQUIRED_MESSAGE, "authError", location="Authorization", locationType="header")
        response.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        return response

    def rate_limited_response(self, request: Request, fault: RateLimitFault, check: TokenCheck) -> Response:
        # Google documents no Retry-After; a fault's retry_after is ignored on purpose.
        return self._usage_limit(fault.status or self.rate_limit_status)

    def _usage_limit(self, status: int) -> Response:
        if status == 429:
            return google_error(429, "Rate Limit Exceeded", "rateLimitExceeded", "usageLimits")
        return google_error(status, "User Rate Limit Exceeded", "userRateLimitExceeded", "usageLimits", status="")

    def server_error_response(self, status: int) -> Response:
        message = "The service is currently unavailable." if status == 503 else "Internal error encountered."
        return google_error(status, message, "backendError", status=_API_STATUS.get(status, "UNKNOWN"))

    def admit(self, request: Request, endpoint: str, check: TokenCheck) -> Response | None:
        units = _GMAIL_UNITS.get(endpoint)
        if units is None or not check.ok or check.grant is None:
            return None
        if self.quota.charge(str(check.grant.identity.get("email")), units, self.grants.now()):
            return None
        self.counters.incr("rate_limited")
        return self._usage_limit(self.rate_limit_status)

    # -- API --------------------------------------------------------------

    def api_routes(self) -> list[BaseRoute]:
        def route(path: str, methods: list[str], name: str, handler: Any) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self.api_call(request, name, handler)

            return Route(path, endpoint, methods=methods)

        gmail, calendar = "/gmail/v1/users/{user_id}", "/calendar/v3/calendars/{calendar_id}"
        return [
            route(f"{gmail}/profile", ["GET"], "profile", self._profile),
            route(f"{gmail}/messages", ["GET"], "messages.list", self._list_messages),
            route(f"{gmail}/messages/send", ["POST"], "messages.send", self._send_message),
            route(f"{gmail}/messages/{{message_id}}", ["GET"], "messages.get", self._get_message),
            route(f"{calendar}/events", ["POST"], "events.insert", self._insert_event),
            route(f"{calendar}/events", ["GET"], "events.list", self._list_events),
            route(f"{calendar}/events/{{event_id}}", ["GET"], "events.get", self._get_event),
        ]

    @staticmethod
    def _insufficient_scope(grant: Grant, need: str) -> Response | None:
        if set(grant.scopes) & _SCOPES_FOR[need]:
            return None
        return google_error(
            403, "Request had insufficient authentication scopes.", "insufficientPermissions", status="PERMISSION_DENIED"
        )

    def _mailbox_owner(self, request: Request, grant: Grant) -> str | Response:
        user_id = request.path_params["user_id"]
        email = str(grant.identity.get("email", ""))
        if user_id not in ("me", email):
            return google_error(403, f"Delegation denied for {email}", "forbidden")
        return email

    async def _profile(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "gmail.read")) is not None:
            return refusal
        owner = self._mailbox_owner(request, grant)
        if isinstance(owner, Response):
            return owner
        with self._data_lock:
            box = self._mailbox(owner)
            total = len(box)
        return JSONResponse(
            {"emailAddress": owner, "messagesTotal": total, "threadsTotal": total, "historyId": str(1000 + total)}
        )

    async def _list_messages(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "gmail.read")) is not None:
            return refusal
        owner = self._mailbox_owner(request, grant)
        if isinstance(owner, Response):
            return owner
        query = request.query_params
        try:
            max_results = min(max(int(query.get("maxResults", 100)), 1), 500)
            offset = _decode_page_token(query.get("pageToken"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return google_error(400, "Invalid pageToken", "invalidArgument")
        search = MailSearch.parse(query.get("q", ""))
        with self._data_lock:
            matches = sorted((m for m in self._mailbox(owner) if search.matches(m)), key=lambda m: m.internal_date, reverse=True)
        page = matches[offset : offset + max_results]
        body: dict[str, Any] = {"resultSizeEstimate": len(matches)}
        if page:
            body["messages"] = [{"id": m.message_id, "threadId": m.thread_id} for m in page]
        if offset + max_results < len(matches):
            body["nextPageToken"] = _encode_page_token(offset + max_results)
        return JSONResponse(body)

    async def _get_message(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "gmail.read")) is not None:
            return refusal
        owner = self._mailbox_owner(request, grant)
        if isinstance(owner, Response):
            return owner
        fmt = request.query_params.get("format", "full")
        if fmt not in ("full", "metadata", "minimal", "raw"):
            return google_error(400, f"Invalid value at 'format' ({fmt})", "invalidArgument")
        wanted = request.query_params.getlist("metadataHeaders")
        with self._data_lock:
            found = next((m for m in self._mailbox(owner) if m.message_id == request.path_params["message_id"]), None)
            body = found.to_json("full" if fmt == "raw" else fmt, wanted) if found else None
        if body is None:
            return google_error(404, "Requested entity was not found.", "notFound")
        return JSONResponse(body)

    async def _send_message(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "gmail.send")) is not None:
            return refusal
        owner = self._mailbox_owner(request, grant)
        if isinstance(owner, Response):
            return owner
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "parseError")
        raw = payload.get("raw") if isinstance(payload, dict) else None
        if not raw:
            return google_error(
                400, "'raw' RFC822 payload message string or uploading message via /upload/* URL required", "invalidArgument"
            )
        try:
            parsed = message_from_bytes(_b64url_decode(str(raw)), policy=policy.default)
        except (ValueError, binascii.Error):
            return google_error(400, "Invalid value for ByteString", "invalidArgument")
        recipients = getaddresses([str(parsed.get(h, "")) for h in ("To", "Cc", "Bcc")])
        if not any(address for _, address in recipients):
            return google_error(400, "Recipient address required", "invalidArgument")
        part = parsed.get_body(("plain",)) if parsed.is_multipart() else parsed
        text = part.get_content() if part is not None else ""
        now = self.grants.now()
        headers = [{"name": "From", "value": owner}]
        headers += [
            {"name": name, "value": str(parsed[name])}
            for name in ("To", "Cc", "Subject", "Message-ID")
            if parsed.get(name) is not None
        ]
        headers.append({"name": "Date", "value": format_datetime(datetime.fromtimestamp(now, UTC))})
        with self._data_lock:
            message = MailMessage(
                self._new_message_id(), "", ["SENT"], headers, text.rstrip("\n"), int(now * 1000) + len(self._mailbox(owner))
            )
            message.thread_id = message.message_id
            self._mailbox(owner).append(message)
        return JSONResponse({"id": message.message_id, "threadId": message.thread_id, "labelIds": ["SENT"]})

    def _calendar_of(self, request: Request, grant: Grant) -> str | Response:
        calendar_id = request.path_params["calendar_id"]
        email = str(grant.identity.get("email", "")).lower()
        if calendar_id.lower() in ("primary", email):
            return email
        return google_error(404, "Not Found", "notFound", status="")

    def _event_json(self, calendar: str, event_id: str, body: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.grants.now(), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        person = {"email": owner.get("email"), "self": True}
        attendees = [
            {"email": a.get("email"), "responseStatus": "needsAction"}
            for a in body.get("attendees") or []
            if isinstance(a, dict) and a.get("email")
        ]
        event = {
            "kind": "calendar#event",
            "etag": f'"{secrets.randbits(52)}"',
            "id": event_id,
            "status": body.get("status") or "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "created": stamp,
            "updated": stamp,
            "summary": body.get("summary"),
            "description": body.get("description"),
            "location": body.get("location"),
            "creator": person,
            "organizer": person,
            "start": body["start"],
            "end": body["end"],
            "iCalUID": f"{event_id}@google.com",
            "sequence": 0,
            "attendees": attendees or None,
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
        return {k: v for k, v in event.items() if v is not None}

    async def _insert_event(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "calendar.write")) is not None:
            return refusal
        calendar = self._calendar_of(request, grant)
        if isinstance(calendar, Response):
            return calendar
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return google_error(400, "Parse Error", "parseError", status="")
        if not isinstance(body, dict):
            return google_error(400, "Parse Error", "parseError", status="")
        event_id = body.get("id")
        if event_id is not None and not _EVENT_ID.match(str(event_id)):
            return google_error(400, "Invalid resource id value.", "invalid", status="")
        if not body.get("end"):
            return google_error(400, "Missing end time.", "required", status="")
        if not body.get("start"):
            return google_error(400, "Missing start time.", "required", status="")
        try:
            start, end = _event_bound(body["start"]), _event_bound(body["end"])
        except ValueError:
            return google_error(400, "Bad Request", "badRequest", status="")
        if start is None or end is None:
            return google_error(400, "Start and end times must either both be date or both be dateTime.", "invalid", status="")
        if end <= start:
            return google_error(400, "The specified time range is empty.", "timeRangeEmpty", status="")
        with self._data_lock:
            events = self._calendars.setdefault(calendar, {})
            event_id = str(event_id or secrets.token_hex(13))
            if event_id in events:
                # Ids stay taken even by cancelled events.
                return google_error(409, "The requested identifier already exists.", "duplicate", status="")
            event = self._event_json(calendar, event_id, body, grant.identity)
            events[event_id] = event
            return JSONResponse(copy.deepcopy(event))

    async def _get_event(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "calendar.read")) is not None:
            return refusal
        calendar = self._calendar_of(request, grant)
        if isinstance(calendar, Response):
            return calendar
        with self._data_lock:
            event = copy.deepcopy(self._calendars.get(calendar, {}).get(request.path_params["event_id"]))
        if event is None:
            return google_error(404, "Not Found", "notFound", status="")
        return JSONResponse(event)

    async def _list_events(self, request: Request, grant: Grant) -> Response:
        if (refusal := self._insufficient_scope(grant, "calendar.read")) is not None:
            return refusal
        calendar = self._calendar_of(request, grant)
        if isinstance(calendar, Response):
            return calendar
        query = request.query_params
        single = query.get("singleEvents", "false").lower() == "true"
        if query.get("orderBy") == "startTime" and not single:
            return google_error(400, "The requested ordering is not available for the particular query.", "badRequest", status="")
        try:
            time_min = _parse_rfc3339(query["timeMin"]) if query.get("timeMin") else None
            time_max = _parse_rfc3339(query["timeMax"]) if query.get("timeMax") else None
            max_results = min(max(int(query.get("maxResults", 250)), 1), 2500)
            offset = _decode_page_token(query.get("pageToken"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return google_error(400, "Bad Request", "badRequest", status="")
        text = (query.get("q") or "").lower()
        show_deleted = query.get("showDeleted", "false").lower() == "true"
        with self._data_lock:
            candidates = [copy.deepcopy(e) for e in self._calendars.get(calendar, {}).values()]
        chosen: list[tuple[datetime, dict[str, Any]]] = []
        for event in candidates:
            start, end = _event_bound(event["start"]), _event_bound(event["end"])
            if start is None or end is None:
                continue  # not reached: every stored event got both bounds past the checks of _insert_event
            if event.get("status") == "cancelled" and not show_deleted:
                continue
            if (time_min is not None and end <= time_min) or (time_max is not None and start >= time_max):
                continue
            if text and text not in f"{event.get('summary', '')} {event.get('description', '')}".lower():
                continue
            chosen.append((start, event))
        if query.get("orderBy") == "startTime":
            chosen.sort(key=lambda pair: pair[0])
        page = [event for _, event in chosen[offset : offset + max_results]]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "summary": calendar,
            "timeZone": "UTC",
            "accessRole": "owner",
            "items": page,
        }
        if offset + max_results < len(chosen):
            body["nextPageToken"] = _encode_page_token(offset + max_results)
        return JSONResponse(body)

    # -- control API extras ------------------------------------------------

    def extra_faults(self) -> dict[str, Any]:
        return {
            "publishing_status": lambda status: self.set_publishing_status(status),
            "user_quota": lambda units_per_minute: self.set_user_quota(int(units_per_minute)),
        }

    def reset_counters(self) -> None:
        super().reset_counters()
        self.quota.reset()

    def stats(self) -> dict[str, Any]:
        with self._data_lock:
            sent = sum(1 for box in self._mailboxes.values() for m in box if "SENT" in m.label_ids)
            events = sum(len(c) for c in self._calendars.values())
        return {
            **super().stats(),
            "publishing_status": self.publishing_status,
            "user_quota_per_minute": self.quota.units_per_minute,
            "sent_messages": sent,
            "events": events,
        }

    def revocation_routes(self) -> list[BaseRoute]:
        return [Route("/revoke", self._revoke, methods=["POST"])]

    async def _revoke(self, request: Request) -> Response:
        """oauth2.googleapis.com/revoke: `token` (access or refresh) in the form; revoking either ends the grant.
        200, or 400 invalid_token for one that is expired, revoked or unknown."""
        self.counters.hit("revoke")
        if (fault := self.revocation_fault("revoke")) is not None:
            return fault
        token = (await read_params(request)).get("token")
        grant = self.grants.grant_for_token(token) if token else None
        if grant is None or not self.grants.end_by_client(token):
            return JSONResponse({"error": "invalid_token", "error_description": "Token expired or revoked"}, status_code=400)
        return JSONResponse({})

    def extra_control_routes(self) -> list[BaseRoute]:
        return [
            Route("/_sim/messages", self._control_messages, methods=["GET", "POST"]),
            Route("/_sim/events", self._control_events, methods=["GET"]),
        ]

    async def _control_messages(self, request: Request) -> Response:
        mailbox = request.query_params.get("mailbox")
        if request.method == "GET":
            return JSONResponse({"mailbox": mailbox or self.default_identity["email"], "messages": self.messages(mailbox)})
        try:
            body = await self.control_body(request)
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        if not body.get("subject") or not body.get("from"):
            return JSONResponse({"error": "from and subject are required"}, 400)
        message = self.seed_message(
            body.get("mailbox") or self.default_identity["email"],
            sender=body["from"],
            subject=body["subject"],
            body=body.get("body", ""),
            to=body.get("to"),
            labels=body.get("labels"),
        )
        return JSONResponse(message, 201)

    async def _control_events(self, request: Request) -> Response:
        return JSONResponse({"events": self.events(request.query_params.get("calendar"))})
