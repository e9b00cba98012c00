"""Simulated Slack Web API with token rotation (oauth.v2.access, conversations.history, conversations.replies,
chat.postMessage with message metadata).

Errors follow real Slack: HTTP 200 with ``ok:false`` for auth and OAuth failures, 429 + Retry-After when limited.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .base import FaultError, ProviderSimulator, basic_credentials, bearer_token, read_params
from .faults import RateLimitFault
from .grants import Grant, GrantFailure, TokenCheck, TokenPolicy, TokenStatus

DEFAULT_SLACK_IDENTITY = {"team_id": "T0SIMTEAM", "team_name": "Simulated Workspace", "user_id": "U0SIMUSER"}
DEFAULT_SLACK_SCOPES = ["channels:history", "channels:read", "chat:write"]
MAX_MESSAGE_LENGTH = 40000
MAX_METADATA_BYTES = 8000

_AUTH_ERRORS = {
    TokenStatus.MISSING: "not_authed",
    TokenStatus.UNKNOWN: "invalid_auth",
    TokenStatus.EXPIRED: "token_expired",
    TokenStatus.REVOKED: "token_revoked",
    TokenStatus.SUPERSEDED: "token_revoked",
    TokenStatus.INACTIVE: "account_inactive",
}


def slack_error(error: str, status: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error, **extra}, status)


def _slack_code() -> str:
    digits = "".join(secrets.choice("0123456789") for _ in range(23))
    return f"{digits[:10]}.{digits[10:]}.{secrets.token_hex(32)}"


def _format_ts(value: Decimal) -> str:
    return f"{value:.6f}"


def parse_metadata(raw: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """chat.postMessage's `metadata`: a JSON object {event_type, event_payload}. Returns (metadata, error)."""
    if raw is None or raw == "":
        return None, None
    if len(raw.encode()) > MAX_METADATA_BYTES:
        return None, "metadata_too_large"
    try:
        metadata = json.loads(raw)
    except ValueError:
        return None, "invalid_metadata_format"
    if not isinstance(metadata, dict) or set(metadata) - {"event_type", "event_payload"}:
        return None, "invalid_metadata_format"
    if (
        not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        return None, "invalid_metadata_schema"
    return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}, None


def _shown(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    shown = copy.deepcopy(message)
    if not with_metadata:
        shown.pop("metadata", None)
    return shown


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "").lower() in ("1", "true")


def encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts.replace('.', '')}".encode()).decode()


def decode_cursor(cursor: str) -> Decimal:
    """Slack cursors are base64 of ``next_ts:<ts without its dot>``; the named message comes next."""
    text = base64.b64decode(cursor, validate=True).decode()
    digits = text.removeprefix("next_ts:")
    if not text.startswith("next_ts:") or not digits.isdigit() or len(digits) <= 6:
        raise ValueError("malformed cursor")
    return Decimal(f"{digits[:-6]}.{digits[-6:]}")


@dataclass
class Channel:
    channel_id: str
    name: str
    messages: list[dict[str, Any]] = field(default_factory=list)  # oldest first, thread replies included


class SlackSimulator(ProviderSimulator):
    provider_title = "Slack"
    token_path = "/api/oauth.v2.access"
    authorize_path = "/oauth/v2/authorize"
    identity_fields = (("team_id", "Workspace ID"), ("team_name", "Workspace name"), ("user_id", "User ID"))

    def __init__(
        self,
        *,
        client_id: str = "sim-slack-client",
        client_secret: str = "sim-slack-secret",
        app_name: str = "Grantkeeper Sim",
        app_id: str = "A0SIMAPP",
        bot_user_id: str = "U0SIMBOT",
        bot_id: str = "B0SIMBOT",
        default_identity: dict[str, Any] | None = None,
        default_scopes: list[str] | None = None,
        access_ttl: int = 43200,
        reuse_detection: bool = True,
        rotation_kills_access_token: bool = False,
        seed: bool = True,
    ) -> None:
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self._channels: dict[str, Channel] = {}
        self._last_ts = Decimal(0)
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            app_name=app_name,
            default_identity=default_identity or DEFAULT_SLACK_IDENTITY,
            default_scopes=default_scopes or DEFAULT_SLACK_SCOPES,
            policy=TokenPolicy(
                access_prefix="xoxe.xoxb-1-",
                refresh_prefix="xoxe-1-",
                access_length=64,
                refresh_length=80,
                access_ttl=access_ttl,
                refresh_ttl=None,  # Slack documents no refresh-token lifetime
                rotation_kills_access_token=rotation_kills_access_token,
                code_factory=_slack_code,
            ),
            reuse_detection=reuse_detection,
        )
        if seed:
            self._seed()

    def _seed(self) -> None:
        self.add_channel("C0GENERAL", "general")
        self.add_channel("C0RANDOM", "random")
        for ts, user, text in [
            ("1512085950.000216", "U0SIMUSER", "Welcome to #general!"),
            ("1512085961.000310", "U0SIMOTHER", "Standup moved to 10:00 tomorrow."),
            ("1512086011.000402", "U0SIMUSER", "Release 1.4 is out, notes in the wiki."),
            ("1512086102.000519", "U0SIMOTHER", "Who owns the flaky deploy job?"),
        ]:
            self.seed_message("C0GENERAL", text, user=user, ts=ts)
        self.seed_message("C0RANDOM", "Lunch at noon?", user="U0SIMOTHER", ts="1512090000.000100")
        self.seed_message("C0RANDOM", "Sure, the usual place.", user="U0SIMUSER", ts="1512090042.000200")

    # -- data -------------------------------------------------------------

    def add_channel(self, channel_id: str, name: str) -> None:
        with self._data_lock:
            self._channels.setdefault(channel_id, Channel(channel_id, name))

    def seed_message(self, channel: str, text: str, *, user: str = "U0SIMUSER", ts: str | None = None) -> dict[str, Any]:
        """Put a message in a channel without going through the API (the channel is created if needed)."""
        with self._data_lock:
            if self._find_channel(channel) is None:
                self.add_channel(channel, channel.lower())
            target = self._find_channel(channel)
            assert target is not None
            message = {"type": "message", "user": user, "text": text, "ts": ts or self._next_ts()}
            target.messages.append(message)
            target.messages.sort(key=lambda m: Decimal(m["ts"]))
            self._last_ts = max(self._last_ts, Decimal(message["ts"]))
            return copy.deepcopy(message)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message of a channel, oldest first, thread replies included."""
        with self._data_lock:
            target = self._find_channel(channel)
            return copy.deepcopy(target.messages) if target else []

    def channels(self) -> dict[str, str]:
        with self._data_lock:
            return {c.channel_id: c.name for c in self._channels.values()}

    def _find_channel(self, ref: str | None) -> Channel | None:
        if not ref:
            return None
        if ref in self._channels:
            return self._channels[ref]
        name = ref.removeprefix("#")
        return next((c for c in self._channels.values() if c.name == name), None)

    def _next_ts(self) -> str:
        # Timestamps double as message ids, so they must be unique and increasing.
        candidate = Decimal(self.grants.now()).quantize(Decimal("0.000001"))
        self._last_ts = max(candidate, self._last_ts + Decimal("0.000001"))
        return _format_ts(self._last_ts)

    # -- OAuth ------------------------------------------------------------

    def consent_target(self) -> str:
        return "your Slack workspace"

    async def token_endpoint(self, request: Request) -> Response:
        params = await read_params(request)
        client_id, client_secret = basic_credentials(request) or (params.get("client_id"), params.get("client_secret"))
        if client_id != self.client_id:
            return slack_error("invalid_client_id")
        if client_secret != self.client_secret:
            return slack_error("bad_client_secret")
        grant_type = params.get("grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            presented = params.get("refresh_token")
            result = self.grants.refresh(presented)
            self.log_grant_event("refresh", result, presented)
            if not result.ok:
                return slack_error("invalid_refresh_token")
        elif grant_type == "authorization_code":
            result = self.grants.redeem_authorization_code(
                params.get("code"),
                client_id=client_id,
                redirect_uri=params.get("redirect_uri"),
                code_verifier=params.get("code_verifier"),
            )
            self.log_grant_event("code exchange", result)
            if not result.ok:
                mismatch = result.failure is GrantFailure.REDIRECT_MISMATCH
                return slack_error("bad_redirect_uri" if mismatch else "invalid_code")
        else:
            return slack_error("invalid_grant_type")
        tokens = result.tokens
        assert tokens is not None
        payload: dict[str, Any] = {
            "ok": True,
            "access_token": tokens.access_token,
            "token_type": "bot",
            "expires_in": tokens.expires_in,
            "refresh_token": tokens.refresh_token,
            "scope": ",".join(tokens.scopes),
            "bot_user_id": self.bot_user_id,
            "app_id": self.app_id,
            "team": {"id": tokens.identity.get("team_id"), "name": tokens.identity.get("team_name")},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": tokens.identity.get("user_id")},
        }
        if tokens.expires_in is None:
            del payload["expires_in"]
        return JSONResponse(payload)

    # -- API --------------------------------------------------------------

    def api_routes(self) -> list[BaseRoute]:
        def route(method: str, handler: Any, methods: list[str]) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self.api_call(request, method, handler)

            return Route(f"/api/{method}", endpoint, methods=methods)

        return [
            route("conversations.history", self._history, ["GET", "POST"]),
            route("conversations.replies", self._replies, ["GET", "POST"]),
            route("chat.postMessage", self._post_message, ["POST"]),
            route("auth.test", self._auth_test, ["GET", "POST"]),
        ]

    async def api_token(self, request: Request) -> str | None:
        # Slack still takes a ``token`` argument in form bodies besides the Bearer header.
        return bearer_token(request) or (await read_params(request)).get("token") or None

    def auth_error_response(self, check: TokenCheck) -> Response:
        error = _AUTH_ERRORS[check.status]
        if check.status is TokenStatus.EXPIRED:
            return slack_error(error, response_metadata={})
        return slack_error(error)

    def rate_limited_response(self, request: Request, fault: RateLimitFault, check: TokenCheck) -> Response:
        response = slack_error("ratelimited", fault.status or 429)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response

    def finish_api_response(self, request: Request, endpoint: str, check: TokenCheck, response: Response) -> Response:
        if check.ok and check.grant is not None:
            response.headers["x-oauth-scopes"] = ",".join(check.grant.scopes)
        return response

    @staticmethod
    def _missing_scope(grant: Grant, needed: str) -> Response | None:
        if needed in grant.scopes:
            return None
        return slack_error("missing_scope", needed=needed, provided=",".join(grant.scopes))

    async def _auth_test(self, request: Request, grant: Grant) -> Response:
        team_id = grant.identity.get("team_id", "")
        return JSONResponse(
            {
                "ok": True,
                "url": f"https://{team_id.lower()}.slack.com/",
                "team": grant.identity.get("team_name"),
                "user": self.app_name.lower().replace(" ", "-"),
                "team_id": team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        )

    async def _history(self, request: Request, grant: Grant) -> Response:
        if refusal := self._missing_scope(grant, "channels:history"):
            return refusal
        params = await read_params(request)
        if not params.get("channel"):
            return slack_error("invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: channel"]})
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            return slack_error("invalid_arguments", response_metadata={"messages": ["[ERROR] invalid limit"]})
        limit = min(max(limit, 1), 999)
        try:
            oldest = Decimal(params.get("oldest") or 0)
        except InvalidOperation:
            return slack_error("invalid_ts_oldest")
        try:
            latest = Decimal(params["latest"]) if params.get("latest") else None
        except InvalidOperation:
            return slack_error("invalid_ts_latest")
        try:
            resume_at = decode_cursor(params["cursor"]) if params.get("cursor") else None
        except (ValueError, binascii.Error):
            return slack_error("invalid_cursor")
        inclusive = _flag(params, "inclusive")
        with_metadata = _flag(params, "include_all_metadata")

        def wanted(message: dict[str, Any]) -> bool:
            ts = Decimal(message["ts"])
            if message.get("thread_ts", message["ts"]) != message["ts"]:
                return False  # thread replies are not part of the channel history
            if ts < oldest or (ts == oldest and not inclusive):
                return False
            if latest is not None and (ts > latest or (ts == latest and not inclusive)):
                return False
            return resume_at is None or ts <= resume_at

        with self._data_lock:
            channel = self._find_channel(params["channel"])
            if channel is None or channel.channel_id != params["channel"]:
                return slack_error("channel_not_found")
            matching = [_shown(m, with_metadata) for m in reversed(channel.messages) if wanted(m)]
        page, rest = matching[:limit], matching[limit:]
        return JSONResponse(
            {
                "ok": True,
                "messages": page,
                "has_more": bool(rest),
                "pin_count": 0,
                "response_metadata": {"next_cursor": encode_cursor(rest[0]["ts"]) if rest else ""},
            }
        )

    async def _replies(self, request: Request, grant: Grant) -> Response:
        """A thread, oldest first: the parent message, then its replies."""
        if refusal := self._missing_scope(grant, "channels:history"):
            return refusal
        params = await read_params(request)
        if not params.get("channel") or not params.get("ts"):
            return slack_error(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: channel, ts"]}
            )
        try:
            limit = min(max(int(params.get("limit") or 1000), 1), 1000)
        except ValueError:
            return slack_error("invalid_arguments", response_metadata={"messages": ["[ERROR] invalid limit"]})
        try:
            resume_at = decode_cursor(params["cursor"]) if params.get("cursor") else None
        except (ValueError, binascii.Error):
            return slack_error("invalid_cursor")
        with_metadata = _flag(params, "include_all_metadata")
        with self._data_lock:
            channel = self._find_channel(params["channel"])
            if channel is None or channel.channel_id != params["channel"]:
                return slack_error("channel_not_found")
            parent = next((m for m in channel.messages if m["ts"] == params["ts"]), None)
            if parent is None:
                return slack_error("thread_not_found")
            thread = [m for m in channel.messages if m is parent or m.get("thread_ts") == parent["ts"] != m["ts"]]
            matching = [_shown(m, with_metadata) for m in thread if resume_at is None or Decimal(m["ts"]) >= resume_at]
        page, rest = matching[:limit], matching[limit:]
        return JSONResponse(
            {
                "ok": True,
                "messages": page,
                "has_more": bool(rest),
                "response_metadata": {"next_cursor": encode_cursor(rest[0]["ts"]) if rest else ""},
            }
        )

    async def _post_message(self, request: Request, grant: Grant) -> Response:
        if refusal := self._missing_scope(grant, "chat:write"):
            return refusal
        params = await read_params(request)
        text = params.get("text") or ""
        if not text and not params.get("blocks") and not params.get("attachments"):
            return slack_error("no_text")
        if len(text) > MAX_MESSAGE_LENGTH:
            return slack_error("msg_too_long")
        metadata, problem = parse_metadata(params.get("metadata"))
        if problem:
            return slack_error(problem)
        with self._data_lock:
            channel = self._find_channel(params.get("channel"))
            if channel is None:
                return slack_error("channel_not_found")
            message: dict[str, Any] = {
                "type": "message",
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "app_id": self.app_id,
                "team": grant.identity.get("team_id"),
                "text": text,
                "ts": self._next_ts(),
            }
            if metadata is not None:
                message["metadata"] = metadata
            # Like Slack, an unknown thread_ts posts to the channel instead of failing.
            parent = next((m for m in channel.messages if m["ts"] == params.get("thread_ts")), None)
            if parent is not None:
                message["thread_ts"] = parent["ts"]
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["latest_reply"] = message["ts"]
                parent["reply_users"] = sorted({*parent.get("reply_users", []), self.bot_user_id})
            channel.messages.append(message)
            return JSONResponse(
                {"ok": True, "channel": channel.channel_id, "ts": message["ts"], "message": copy.deepcopy(message)}
            )

    # -- control API extras ------------------------------------------------

    def revocation_routes(self) -> list[BaseRoute]:
        return [Route("/api/auth.revoke", self._auth_revoke, methods=["GET", "POST"])]

    async def _auth_revoke(self, request: Request) -> Response:
        """auth.revoke: ends the token it is called with; `test=1` only checks it."""
        self.counters.hit("auth.revoke")
        if (fault := self.revocation_fault("auth.revoke")) is not None:
            return fault
        params = await read_params(request)
        token = bearer_token(request) or params.get("token")
        if not self.grants.check_access_token(token).ok:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if params.get("test") in ("1", "true"):
            return JSONResponse({"ok": True, "revoked": False})
        return JSONResponse({"ok": True, "revoked": self.grants.end_by_client(token)})

    def extra_control_routes(self) -> list[BaseRoute]:
        return [Route("/_sim/messages", self._control_messages, methods=["GET", "POST"])]

    async def _control_messages(self, request: Request) -> Response:
        if request.method == "GET":
            wanted = request.query_params.get("channel")
            if wanted:
                if self._find_channel(wanted) is None:
                    return JSONResponse({"error": "unknown channel"}, 404)
                return JSONResponse({"channel": wanted, "messages": self.messages(wanted)})
            everything = {cid: {"name": name, "messages": self.messages(cid)} for cid, name in self.channels().items()}
            return JSONResponse({"channels": everything})
        try:
            body = await self.control_body(request)
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        if not body.get("channel") or not body.get("text"):
            return JSONResponse({"error": "channel and text are required"}, 400)
        user = body.get("user", "U0SIMUSER")
        message = self.seed_message(body["channel"], body["text"], user=user, ts=body.get("ts"))
        return JSONResponse(message, 201)
