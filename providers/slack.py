"""Slack with token rotation: every error is HTTP 200 `ok:false` with a code; 429 carries Retry-After.

Reference: docs.slack.dev/authentication/using-token-rotation and the Web API's common errors.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
from pydantic import BaseModel

from providers.base import (
    OK,
    ApiCall,
    ApiSession,
    Classification,
    GrantToEnd,
    HealthProbe,
    OutcomeUnknownError,
    Provider,
    ProviderSpec,
    RevocationRequest,
    TokenVerdict,
    Verdict,
    json_body,
    response_json,
    retry_after_seconds,
)

SPEC = ProviderSpec(
    name="slack",
    display_name="Slack",
    api_base_url="https://slack.com/api",
    oauth_base_url="https://slack.com",
    authorize_path="/oauth/v2/authorize",
    token_path="/api/oauth.v2.access",
    revoke_path="/api/auth.revoke",
    client_auth_method="client_secret_post",
    scopes=["channels:history", "channels:read", "chat:write"],
    scope_separator=",",
    default_access_ttl_seconds=43200,
    default_refresh_ttl_seconds=None,
    rotates_refresh_token=True,
    health_probe=HealthProbe(method="POST", path="/auth.test"),
    secret_patterns=[r"\bxox[a-z]?[a-z0-9.]*-[A-Za-z0-9-]{6,}"],
    docs_url="https://docs.slack.dev/authentication/using-token-rotation",
)

_API_ERRORS: dict[str, tuple[Verdict, str]] = {
    "token_expired": (Verdict.EXPIRED, "The Slack token expired."),
    "invalid_auth": (Verdict.AUTH_FAILED, "Slack did not accept the token."),
    "not_authed": (Verdict.AUTH_FAILED, "Slack did not receive a token."),
    "token_revoked": (Verdict.REVOKED, "The Slack grant was revoked (user or workspace removed, or app uninstalled)."),
    "account_inactive": (Verdict.INACTIVE, "The Slack user or workspace is deactivated."),
    "team_access_not_granted": (Verdict.FORBIDDEN, "The app is not granted access to this workspace."),
    "missing_scope": (Verdict.FORBIDDEN, "The Slack grant lacks a scope this call needs; reconnect with it."),
    "ekm_access_denied": (Verdict.FORBIDDEN, "Workspace administrators suspended access to this content."),
    "ratelimited": (Verdict.RATE_LIMITED, "Slack is rate limiting these calls."),
    "channel_not_found": (Verdict.INVALID_INPUT, "No such channel, or the app cannot see it."),
    "not_in_channel": (Verdict.INVALID_INPUT, "The app is not a member of that channel."),
    "is_archived": (Verdict.INVALID_INPUT, "The channel is archived."),
    "msg_too_long": (Verdict.INVALID_INPUT, "The message text is too long."),
    "no_text": (Verdict.INVALID_INPUT, "The message has no text."),
    "invalid_cursor": (Verdict.INVALID_INPUT, "The pagination cursor is not valid."),
    "invalid_arguments": (Verdict.INVALID_INPUT, "Slack rejected the arguments."),
    "invalid_ts_latest": (Verdict.INVALID_INPUT, "The 'latest' timestamp is not valid."),
    "invalid_ts_oldest": (Verdict.INVALID_INPUT, "The 'oldest' timestamp is not valid."),
    "thread_not_found": (Verdict.INVALID_INPUT, "No such thread."),
    "invalid_metadata_format": (Verdict.INVALID_INPUT, "The message metadata is not valid JSON of Slack's shape."),
    "invalid_metadata_schema": (Verdict.INVALID_INPUT, "The message metadata does not match its schema."),
    "metadata_too_large": (Verdict.INVALID_INPUT, "The message metadata is too large."),
    "internal_error": (Verdict.TRANSIENT, "Slack had an internal error."),
    "fatal_error": (Verdict.TRANSIENT, "Slack had an internal error."),
    "service_unavailable": (Verdict.TRANSIENT, "Slack is unavailable."),
    "request_timeout": (Verdict.TRANSIENT, "Slack timed out."),
}


class Slack(Provider):
    spec = SPEC

    def classify_api_response(self, response: httpx2.Response) -> Classification:
        if response.status_code == 429:
            return Classification(
                Verdict.RATE_LIMITED, "ratelimited", "Slack is rate limiting these calls.", retry_after_seconds(response)
            )
        if response.status_code != 200:
            return super().classify_api_response(response)
        body = json_body(response)
        if not isinstance(body, dict) or "ok" not in body:
            return Classification(Verdict.UPSTREAM, "malformed_response", "Slack sent an answer that is not Slack's.")
        if body["ok"] is True:
            return OK
        error = str(body.get("error") or "unknown_error")[:64]
        verdict, message = _API_ERRORS.get(error, (Verdict.UPSTREAM, f"Slack refused the call ({error})."))
        return Classification(verdict, error, message, retry_after_seconds(response))

    def classify_token_error(self, error: str, http_status: int | None) -> TokenVerdict:
        if error in ("invalid_refresh_token", "invalid_grant", "token_revoked", "invalid_code", "code_already_used"):
            return TokenVerdict.REJECTED
        if error in ("invalid_client_id", "bad_client_secret", "invalid_client", "bad_redirect_uri"):
            return TokenVerdict.CLIENT_MISCONFIGURED
        if error in ("ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"):
            return TokenVerdict.TRANSIENT
        return TokenVerdict.UNKNOWN

    def identity_from_token_response(self, token: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        team = token.get("team") or {}
        user = token.get("authed_user") or {}
        team_id, user_id = team.get("id"), user.get("id")
        identity = {"team_id": team_id, "team_name": team.get("name"), "user_id": user_id}
        return (f"{team_id}:{user_id}" if team_id and user_id else None), identity

    def identity_from_probe(self, body: Any) -> tuple[str | None, dict[str, Any]]:
        if not isinstance(body, dict):
            return None, {}
        return None, {"team_id": body.get("team_id"), "team_name": body.get("team")}

    def revocation(self, spec: ProviderSpec, grant: GrantToEnd) -> RevocationRequest | str:
        # auth.revoke ends the token it is called with (and, for a rotating grant, its refresh token with it).
        return RevocationRequest(
            "POST", spec.api_base_url + "/auth.revoke", headers={"Authorization": f"Bearer {grant.access_token}"}
        )

    def revocation_accepted(self, response: httpx2.Response) -> bool:
        body = json_body(response)
        if response.status_code != 200 or not isinstance(body, dict):
            return False
        # A token Slack no longer knows has nothing left to revoke.
        return body.get("ok") is True or body.get("error") in ("invalid_auth", "token_revoked", "account_inactive")

    def describe_identity(self, provider_account_id: str, identity: dict[str, Any]) -> str:
        team_id, _, user_id = provider_account_id.partition(":")
        team = f"{identity['team_name']} ({team_id})" if identity.get("team_name") else team_id
        return f"user {user_id or '?'} in workspace {team}"


PROVIDER = Slack()


class Message(BaseModel):
    """A channel message, as much of it as the tools use."""

    ts: str
    user: str | None = None
    text: str = ""
    thread_ts: str | None = None


class History(BaseModel):
    """One page of a channel's history, newest first."""

    messages: list[Message]
    has_more: bool
    next_cursor: str | None = None


class PostedMessage(BaseModel):
    """Where a message stands once posted: `posted` is false when it was already there (same idempotency key)."""

    channel: str
    ts: str
    posted: bool


async def conversations_history(
    api: ApiSession,
    *,
    channel: str,
    limit: int,
    cursor: str | None = None,
    oldest: str | None = None,
    latest: str | None = None,
) -> History:
    params: dict[str, Any] = {"channel": channel, "limit": limit}
    for name, value in (("cursor", cursor), ("oldest", oldest), ("latest", latest)):
        if value:
            params[name] = value
    body = response_json(await api.send(ApiCall("GET", "/conversations.history", params=params)))
    return History(
        messages=[Message.model_validate(m) for m in body.get("messages", [])],
        has_more=bool(body.get("has_more")),
        # Slack sends an empty cursor on the last page.
        next_cursor=(body.get("response_metadata") or {}).get("next_cursor") or None,
    )


# Message metadata (docs.slack.dev/messaging/message-metadata) carries the idempotency key of a post, where no
# reader of the channel sees it; conversations.history/replies return it with include_all_metadata.
IDEMPOTENCY_EVENT_TYPE = "grantkeeper_post"
# How far back a lost top-level post is looked for: the answer was lost moments ago, retries included.
LOST_POST_WINDOW_SECONDS = 600
SCAN_LIMIT = 200
SCAN_MAX_PAGES = 10


def idempotency_metadata(key: str) -> dict[str, Any]:
    return {"event_type": IDEMPOTENCY_EVENT_TYPE, "event_payload": {"idempotency_key": key}}


def carries_key(message: Any, key: str) -> bool:
    metadata = message.get("metadata") if isinstance(message, dict) else None
    return (
        isinstance(metadata, dict)
        and metadata.get("event_type") == IDEMPOTENCY_EVENT_TYPE
        and isinstance(metadata.get("event_payload"), dict)
        and metadata["event_payload"].get("idempotency_key") == key
    )


async def post_message(
    api: ApiSession,
    *,
    channel: str,
    text: str,
    thread_ts: str | None = None,
    idempotency_key: str,
    check_existing: bool,
) -> PostedMessage:
    """Post at most once per idempotency key.

    chat.postMessage has no idempotency key, so the key rides in the message's metadata. With `check_existing`
    (the caller chose the key, so this may be a repeat) the thread or recent channel history is searched for it
    first; after an unclear failure it is searched again before anything is sent twice.
    """
    if check_existing:
        found = await _find_posted(api, channel, thread_ts, idempotency_key)
        if found is not None:
            return PostedMessage(channel=channel, ts=found, posted=False)
    payload: dict[str, Any] = {"channel": channel, "text": text, "metadata": idempotency_metadata(idempotency_key)}
    if thread_ts:
        payload["thread_ts"] = thread_ts
    call = ApiCall("POST", "/chat.postMessage", json=payload, idempotent=False)
    try:
        return _posted(response_json(await api.send(call)))
    except OutcomeUnknownError as lost:
        try:
            found = await _find_posted(api, channel, thread_ts, idempotency_key)
        except Exception:
            # Whatever stopped the look-up (an outage, a limit, a revoked grant), the post's fate is still unknown.
            raise lost from None
        if found is not None:
            return PostedMessage(channel=channel, ts=found, posted=True)
        # Proven absent, so one more attempt cannot duplicate it.
        return _posted(response_json(await api.send(call)))


def _posted(answer: dict[str, Any]) -> PostedMessage:
    return PostedMessage(channel=answer["channel"], ts=answer["ts"], posted=True)


async def _find_posted(api: ApiSession, channel: str, thread_ts: str | None, key: str) -> str | None:
    """The timestamp of the message carrying `key`, or None."""
    if thread_ts:
        params: dict[str, Any] = {"channel": channel, "ts": thread_ts, "limit": SCAN_LIMIT, "include_all_metadata": "true"}
        call = ApiCall("GET", "/conversations.replies", params=params)
    else:
        params = {
            "channel": channel,
            "limit": SCAN_LIMIT,
            "include_all_metadata": "true",
            "oldest": f"{time.time() - LOST_POST_WINDOW_SECONDS:.6f}",
        }
        call = ApiCall("GET", "/conversations.history", params=params)
    for _ in range(SCAN_MAX_PAGES):
        body = response_json(await api.send(call))
        for message in body.get("messages") or []:
            if carries_key(message, key):
                return str(message["ts"])
        cursor = (body.get("response_metadata") or {}).get("next_cursor")
        if not thread_ts or not body.get("has_more") or not cursor:
            return None
        call = ApiCall("GET", "/conversations.replies", params={**params, "cursor": cursor})
    return None
