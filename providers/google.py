"""Google (Gmail + Calendar) with one grant: refresh tokens are not rotated, access tokens live ~1 h, a dead
refresh token is 400 `invalid_grant`, a dead access token is 401, and quota errors are 403/429 with a
`usageLimits` reason and no Retry-After (so: exponential backoff).

Reference: google-auth-library-python `google/oauth2/_client.py`; developers.google.com/gmail/api/reference/quota;
the Calendar API's `events.insert` (a client-chosen event id makes the insert idempotent).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
from pydantic import BaseModel, Field

from providers.base import (
    OK,
    UNSUPPORTED,
    ApiCall,
    ApiSession,
    Classification,
    GrantToEnd,
    HealthProbe,
    Provider,
    ProviderSpec,
    RequestRejectedError,
    RevocationRequest,
    UnsafeArgument,
    Verdict,
    json_body,
    response_json,
    retry_after_seconds,
    safe_header_text,
    safe_segment,
)

GMAIL_READ = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"
CALENDAR_EVENTS = "https://www.googleapis.com/auth/calendar.events"

SPEC = ProviderSpec(
    name="google",
    display_name="Google",
    # www.googleapis.com serves both /gmail/v1 and /calendar/v3, so one grant needs one base URL.
    api_base_url="https://www.googleapis.com",
    oauth_base_url="https://oauth2.googleapis.com",
    token_path="/token",
    authorize_base_url="https://accounts.google.com",
    authorize_path="/o/oauth2/v2/auth",
    # Without access_type=offline there is no refresh token; without prompt=consent a repeat consent
    # (our re-authorization) returns none either.
    authorize_params={"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
    revoke_path="/revoke",
    client_auth_method="client_secret_post",
    token_body_encoding="form",
    scopes=[GMAIL_READ, GMAIL_SEND, CALENDAR_EVENTS],
    default_access_ttl_seconds=3599,
    default_refresh_ttl_seconds=None,  # no fixed lifetime (6 months unused; 7 days for apps in "Testing")
    rotates_refresh_token=False,
    health_probe=HealthProbe(method="GET", path="/gmail/v1/users/me/profile"),
    secret_patterns=[r"\bya29\.[A-Za-z0-9_.-]+", r"\b1//0[A-Za-z0-9_-]{20,}"],
    docs_url="https://developers.google.com/identity/protocols/oauth2/web-server#offline",
)

# usageLimits reasons that mean "slow down" (retry with backoff) and those that mean "not today".
_BACKOFF_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "concurrentLimitExceeded"}
_DAILY_REASONS = {"dailyLimitExceeded", "quotaExceeded", "dailyLimitExceededUnreg"}
DAILY_LIMIT_WAIT_SECONDS = 3600.0


def _error_details(body: Any) -> tuple[str, str, set[str], set[str]]:
    """(message, status, reasons, domains) of a Google JSON error; empty when the body is something else."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", "", set(), set()
    reasons, domains = set(), set()
    for item in error.get("errors") or []:
        if isinstance(item, dict):
            reasons.add(str(item.get("reason", "")))
            domains.add(str(item.get("domain", "")))
    return str(error.get("message", ""))[:300], str(error.get("status", "")), reasons, domains


class Google(Provider):
    """Token errors need nothing beyond RFC 6749: every dead refresh token (revoked, unused for 6 months, password
    change, the 7-day "Testing" expiry, the per-client token limit) is 400 `invalid_grant`."""

    spec = SPEC

    def classify_api_response(self, response: httpx2.Response) -> Classification:
        status = response.status_code
        if status < 400:
            return OK
        message, api_status, reasons, domains = _error_details(json_body(response))
        if status == 401:
            # Google says the same for an expired and a revoked token; the refresh tells them apart.
            return Classification(Verdict.AUTH_FAILED, "auth_error", "Google did not accept the token.")
        if status in (403, 429):
            if reasons & _DAILY_REASONS:
                return Classification(
                    Verdict.RATE_LIMITED,
                    next(iter(reasons & _DAILY_REASONS)),
                    "Google's daily quota for this is used up.",
                    retry_after_seconds(response) or DAILY_LIMIT_WAIT_SECONDS,
                )
            if status == 429 or "usageLimits" in domains or reasons & _BACKOFF_REASONS:
                reason = next(iter(reasons & _BACKOFF_REASONS), "rate_limited")
                # No Retry-After is documented: None makes the server back off exponentially.
                return Classification(
                    Verdict.RATE_LIMITED, reason, "Google is rate limiting these calls.", retry_after_seconds(response)
                )
            reason = next(iter(reasons), "forbidden") or "forbidden"
            return Classification(
                Verdict.FORBIDDEN, reason, message or "Google refused: the grant lacks a scope or permission for this."
            )
        if status == 404:
            return Classification(Verdict.NOT_FOUND, "not_found", message or "Google says it does not exist.")
        if status == 409 and "duplicate" in reasons:
            return Classification(Verdict.INVALID_INPUT, "duplicate", message or "The identifier already exists.")
        if status in (400, 409, 410, 412, 422):
            reason = next(iter(reasons), "") or api_status.lower() or f"http_{status}"
            return Classification(Verdict.INVALID_INPUT, reason, message or "Google rejected the request.")
        return super().classify_api_response(response)

    def revocation(self, spec: ProviderSpec, grant: GrantToEnd) -> RevocationRequest | str:
        """Google's revoke endpoint; revoking any token of the grant ends the user's authorization of the app. So a
        grant replaced by a reconnect of the same Google account is left alone: ending it would end its successor."""
        if grant.replaced:
            return UNSUPPORTED
        return RevocationRequest(
            "POST",
            spec.oauth_base_url + (spec.revoke_path or "/revoke"),
            data={"token": grant.refresh_token or grant.access_token},
        )

    def revocation_accepted(self, response: httpx2.Response) -> bool:
        if response.status_code == 200:
            return True
        body = json_body(response)  # 400 invalid_token: expired or revoked already, nothing left to end
        return response.status_code == 400 and isinstance(body, dict) and body.get("error") == "invalid_token"

    def identity_from_probe(self, body: Any) -> tuple[str | None, dict[str, Any]]:
        if not isinstance(body, dict) or not body.get("emailAddress"):
            return None, {}
        return str(body["emailAddress"]), {"email": body["emailAddress"]}

    def describe_identity(self, provider_account_id: str, identity: dict[str, Any]) -> str:
        return str(identity.get("email") or provider_account_id)


PROVIDER = Google()
GMAIL = "/gmail/v1/users/me"
METADATA_HEADERS = ("Subject", "From", "To", "Date")
METADATA_CONCURRENCY = 5
T = TypeVar("T")


class MailMessage(BaseModel):
    """A Gmail message's metadata: the headers the tools show, the snippet and the labels."""

    id: str
    thread_id: str | None = None
    subject: str | None = None
    sender: str | None = Field(default=None, description="the From header")
    to: str | None = None
    date: str | None = None
    snippet: str = ""
    label_ids: list[str] = Field(default_factory=list)

    @classmethod
    def from_api(cls, message: dict[str, Any]) -> MailMessage:
        return cls(
            id=message["id"],
            thread_id=message.get("threadId"),
            subject=header(message, "Subject"),
            sender=header(message, "From"),
            to=header(message, "To"),
            date=header(message, "Date"),
            snippet=message.get("snippet") or "",
            label_ids=list(message.get("labelIds") or []),
        )


class MessageSearch(BaseModel):
    messages: list[MailMessage]
    next_page_token: str | None = None
    result_size_estimate: int  # Gmail's estimate of all matches, not just this page


class SentMessage(BaseModel):
    id: str
    thread_id: str | None = None
    label_ids: list[str] = Field(default_factory=list)


class CalendarEvent(BaseModel):
    """A Calendar event; `start` and `end` are RFC 3339 date-times, or dates for all-day events."""

    id: str
    status: str | None = None
    summary: str | None = None
    start: str | None = Field(default=None, description="RFC 3339 date-time, or a date for all-day events")
    end: str | None = None
    html_link: str | None = None
    organizer: str | None = None
    attendees: list[str] = Field(default_factory=list)

    @classmethod
    def from_api(cls, event: dict[str, Any]) -> CalendarEvent:
        def moment(value: Any) -> str | None:
            return (value.get("dateTime") or value.get("date")) if isinstance(value, dict) else None

        return cls(
            id=event["id"],
            status=event.get("status"),
            summary=event.get("summary"),
            start=moment(event.get("start")),
            end=moment(event.get("end")),
            html_link=event.get("htmlLink"),
            organizer=(event.get("organizer") or {}).get("email"),
            attendees=[a["email"] for a in event.get("attendees") or [] if isinstance(a, dict) and "email" in a],
        )

    def matches(self, summary: str, start: datetime, end: datetime) -> bool:
        """Whether this is the event asked for: the same title, start and end (Google may write a moment in
        another offset, or with `Z`)."""
        return self.summary == summary and _same_moment(self.start, start) and _same_moment(self.end, end)


class CreatedEvent(BaseModel):
    event: CalendarEvent
    created: bool  # false when an event with the idempotency key already existed


class EventPage(BaseModel):
    events: list[CalendarEvent]
    next_page_token: str | None = None


def _same_moment(returned: str | None, wanted: datetime) -> bool:
    try:
        return returned is not None and datetime.fromisoformat(returned.replace("Z", "+00:00")) == wanted
    except ValueError:
        return False


async def _bounded(calls: list[Awaitable[T]], limit: int) -> list[T]:
    """Run `calls` at most `limit` at a time; the first failure is raised as itself (no ExceptionGroup), after
    every call has finished, so nothing is left running behind the result."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def search_messages(api: ApiSession, *, query: str, max_results: int, page_token: str | None = None) -> MessageSearch:
    """One `messages.list`, then `messages.get?format=metadata` for each id (at most `max_results`, a few at a
    time). A message deleted between the two calls is left out rather than failing the search."""
    params: dict[str, Any] = {"q": query, "maxResults": max_results}
    if page_token:
        params["pageToken"] = page_token
    listing = response_json(await api.send(ApiCall("GET", f"{GMAIL}/messages", params=params)))
    ids = [m["id"] for m in listing.get("messages") or []][:max_results]
    for message_id in ids:  # ids come from the provider: a hostile answer must not steer the next requests
        try:
            safe_segment("a message id", message_id, max_length=256)
        except UnsafeArgument:
            raise ValueError("Gmail listed a message id that is not one path segment") from None  # malformed answer

    async def metadata(message_id: str) -> dict[str, Any] | None:
        call = ApiCall(
            "GET",
            f"{GMAIL}/messages/{quote(message_id, safe='')}",
            params={"format": "metadata", "metadataHeaders": list(METADATA_HEADERS)},
        )
        try:
            return response_json(await api.send(call))
        except RequestRejectedError as refused:
            if refused.reason == "not_found":
                return None
            raise

    messages = await _bounded([metadata(i) for i in ids], METADATA_CONCURRENCY)
    return MessageSearch(
        messages=[MailMessage.from_api(m) for m in messages if m is not None],
        next_page_token=listing.get("nextPageToken"),
        result_size_estimate=int(listing.get("resultSizeEstimate") or 0),
    )


def header(message: dict[str, Any], name: str) -> str | None:
    for item in (message.get("payload") or {}).get("headers") or []:
        if isinstance(item, dict) and str(item.get("name", "")).lower() == name.lower():
            return str(item.get("value", ""))
    return None


def rfc822_raw(*, to: list[str], subject: str, body: str, cc: list[str] | None = None) -> str:
    """The message as Gmail's `raw`: RFC 822 bytes, base64url. Gmail fills From with the account's address.

    Header-bound arguments are checked first (`UnsafeArgument`): a line break in a subject or an address must be
    refused before anything is sent, not folded into another header."""
    safe_header_text("subject", subject)
    for address in [*to, *(cc or [])]:
        safe_header_text("an address", address, max_length=254)
        if any(c in address for c in ',;<>"\\') or address.count("@") != 1:
            raise UnsafeArgument("an address must be one plain address, e.g. alice@example.com", "invalid_address")
    message = EmailMessage()
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="grantkeeper.invalid")
    message.set_content(body)
    return base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")


async def send_message(api: ApiSession, *, to: list[str], subject: str, body: str, cc: list[str] | None = None) -> SentMessage:
    raw = rfc822_raw(to=to, subject=subject, body=body, cc=cc)
    # messages.send has no idempotency key: a repeat after an unclear failure could send twice.
    sent = response_json(await api.send(ApiCall("POST", f"{GMAIL}/messages/send", json={"raw": raw}, idempotent=False)))
    return SentMessage(id=sent["id"], thread_id=sent.get("threadId"), label_ids=sent.get("labelIds") or [])


def event_id_for(idempotency_key: str) -> str:
    """A Calendar event id derived from an idempotency key: base32hex (a–v, 0–9), as events.insert requires."""
    digest = hashlib.sha256(f"grantkeeper-event:{idempotency_key}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def _calendar(calendar_id: str) -> str:
    safe_segment("calendar_id", calendar_id, max_length=254)
    return f"/calendar/v3/calendars/{quote(calendar_id, safe='@.')}"


async def create_event(
    api: ApiSession,
    *,
    calendar_id: str,
    summary: str,
    start: datetime,
    end: datetime,
    description: str | None = None,
    attendees: list[str] | None = None,
    idempotency_key: str,
    notify_attendees: bool = False,
) -> CreatedEvent:
    """Insert an event at most once per idempotency key.

    The event id is derived from the key, so the insert itself is idempotent: repeating it (after a lost answer,
    or as a new call with the same key) gets 409 `duplicate`, and the event already there is fetched instead.
    """
    event: dict[str, Any] = {
        "id": event_id_for(idempotency_key),
        "summary": summary,
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": end.isoformat()},
    }
    if description:
        event["description"] = description
    if attendees:
        event["attendees"] = [{"email": address} for address in attendees]
    call = ApiCall(
        "POST",
        f"{_calendar(calendar_id)}/events",
        params={"sendUpdates": "all" if notify_attendees else "none"},
        json=event,
        idempotent=True,
    )
    try:
        return CreatedEvent(event=CalendarEvent.from_api(response_json(await api.send(call))), created=True)
    except RequestRejectedError as refused:
        if refused.reason != "duplicate":
            raise
    existing = await api.send(ApiCall("GET", f"{_calendar(calendar_id)}/events/{event['id']}"))
    return CreatedEvent(event=CalendarEvent.from_api(response_json(existing)), created=False)


async def list_events(
    api: ApiSession,
    *,
    calendar_id: str,
    time_min: datetime,
    time_max: datetime,
    max_results: int,
    page_token: str | None = None,
    query: str | None = None,
) -> EventPage:
    params: dict[str, Any] = {
        "timeMin": time_min.isoformat(),
        "timeMax": time_max.isoformat(),
        "maxResults": max_results,
        "singleEvents": "true",
        "orderBy": "startTime",
    }
    if page_token:
        params["pageToken"] = page_token
    if query:
        params["q"] = query
    found = response_json(await api.send(ApiCall("GET", f"{_calendar(calendar_id)}/events", params=params)))
    return EventPage(
        events=[CalendarEvent.from_api(e) for e in found.get("items") or []], next_page_token=found.get("nextPageToken")
    )
