"""Google tools on one grant: search and send Gmail, create (at most once per key) and list Calendar events."""

from __future__ import annotations

import uuid
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import AwareDatetime, Field

from providers import google
from server import failures
from server.execute import ProviderSession
from server.results import Ok, result_model
from tools.toolset import AccountLabel, Tool, Toolset

EmailAddress = Annotated[
    str,
    Field(
        pattern=r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$",
        max_length=254,
        description="a plain address, e.g. alice@example.com",
    ),
]
# Line breaks and control characters (CR, LF, VT, NEL, U+2028…) are refused by providers/google.rfc822_raw, and a
# calendar id that is not one safe path segment by providers/google._calendar, both as `invalid_input`.
HeaderText = Annotated[str, Field(min_length=1, max_length=998)]
CalendarId = Annotated[str, Field(max_length=254, description="'primary' (the user's own calendar) or a calendar's id")]
IdempotencyKey = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="repeat a call with the same key and at most one event is created")
]
PageToken = Annotated[str, Field(max_length=2000, description="from a previous call's next_page_token")]


class SearchMessagesOk(Ok):
    query: str
    messages: list[google.MailMessage]
    result_size_estimate: int = Field(description="Gmail's estimate of all matches, not just this page")
    next_page_token: str | None = Field(default=None, description="pass as page_token for the next page")

    def summary(self) -> str:
        lines = [f"{len(self.messages)} message(s) match {self.query!r}" + (" (more available)" if self.next_page_token else "")]
        lines += [
            f"[{m.id}] {m.date or '?'} from {m.sender or '?'}: {m.subject or '(no subject)'} — {m.snippet}" for m in self.messages
        ]
        return "\n".join(lines)


class SendMessageOk(Ok):
    id: str
    thread_id: str | None = None
    label_ids: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        return f"Sent (message id {self.id})."


class CreateEventOk(Ok):
    event: google.CalendarEvent
    created: bool = Field(description="false when an event with this idempotency key already existed")
    idempotency_key: str

    def summary(self) -> str:
        verb = "Created" if self.created else "Already existed:"
        return f"{verb} event {self.event.summary!r} {self.event.start} – {self.event.end} {self.event.html_link or ''}".strip()


class ListEventsOk(Ok):
    calendar_id: str
    events: list[google.CalendarEvent]
    next_page_token: str | None = Field(default=None, description="pass as page_token for the next page")

    def summary(self) -> str:
        lines = [f"{len(self.events)} event(s) in {self.calendar_id}" + (" (more available)" if self.next_page_token else "")]
        lines += [f"{e.start} – {e.end} {e.summary or '(no title)'} [{e.id}]" for e in self.events]
        return "\n".join(lines)


SearchMessagesResult = result_model(SearchMessagesOk)
SendMessageResult = result_model(SendMessageOk)
CreateEventResult = result_model(CreateEventOk)
ListEventsResult = result_model(ListEventsOk)


async def search_messages(
    ctx: Context,
    query: Annotated[
        str, Field(min_length=1, max_length=500, description="Gmail search syntax, e.g. 'from:bob@example.com is:unread'")
    ],
    max_results: Annotated[int, Field(ge=1, le=25, description="messages per page (each costs one more call)")] = 10,
    page_token: PageToken | None = None,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, SearchMessagesResult]:
    """Search the connected Gmail mailbox; returns subject, sender, date and snippet of each match."""

    async def operation(api: ProviderSession) -> SearchMessagesOk:
        found = await google.search_messages(api, query=query, max_results=max_results, page_token=page_token)
        return SearchMessagesOk(
            query=query,
            messages=found.messages,
            result_size_estimate=found.result_size_estimate,
            next_page_token=found.next_page_token,
        )

    return await Toolset.of(ctx).run(ctx, "google", operation, account=account)


async def send_message(
    ctx: Context,
    to: Annotated[list[EmailAddress], Field(min_length=1, max_length=50)],
    subject: HeaderText,
    body: Annotated[str, Field(min_length=1, max_length=100_000, description="plain text")],
    cc: Annotated[list[EmailAddress], Field(max_length=50)] = [],  # noqa: B006
    account: AccountLabel = None,
) -> Annotated[CallToolResult, SendMessageResult]:
    """Send a plain-text email from the connected Gmail account.

    Gmail has no idempotency key: if the result says outcome_unknown, search the Sent folder
    (e.g. `in:sent subject:"…"`) before sending again."""

    async def operation(api: ProviderSession) -> SendMessageOk:
        sent = await google.send_message(api, to=list(to), subject=subject, body=body, cc=list(cc))
        return SendMessageOk(id=sent.id, thread_id=sent.thread_id, label_ids=sent.label_ids)

    return await Toolset.of(ctx).run(ctx, "google", operation, account=account)


async def create_event(
    ctx: Context,
    summary: Annotated[str, Field(min_length=1, max_length=1024)],
    start: Annotated[AwareDatetime, Field(description="RFC 3339 with a UTC offset, e.g. 2026-05-04T10:00:00+02:00")],
    end: AwareDatetime,
    attendees: Annotated[list[EmailAddress], Field(max_length=100)] = [],  # noqa: B006
    description: Annotated[str | None, Field(max_length=8000)] = None,
    calendar_id: CalendarId = "primary",
    notify_attendees: Annotated[bool, Field(description="email the attendees an invitation")] = False,
    idempotency_key: IdempotencyKey | None = None,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, CreateEventResult]:
    """Create an event in the connected Google Calendar.

    Safe to retry: pass the same idempotency_key and at most one event is created."""
    key = idempotency_key or uuid.uuid4().hex

    async def operation(api: ProviderSession) -> CreateEventOk:
        if end <= start:
            raise failures.InvalidInputError("time_range_empty", "The event must end after it starts.")
        found = await google.create_event(
            api,
            calendar_id=calendar_id,
            summary=summary,
            start=start,
            end=end,
            description=description,
            attendees=list(attendees),
            idempotency_key=key,
            notify_attendees=notify_attendees,
        )
        if not found.created and not found.event.matches(summary, start, end):
            raise failures.InvalidInputError(
                "idempotency_key_reused",
                "An event with this idempotency key exists with other details; use a new key for a different event.",
            )
        return CreateEventOk(event=found.event, created=found.created, idempotency_key=key)

    return await Toolset.of(ctx).run(ctx, "google", operation, account=account)


async def list_events(
    ctx: Context,
    time_min: Annotated[AwareDatetime, Field(description="window start, RFC 3339 with a UTC offset")],
    time_max: Annotated[AwareDatetime, Field(description="window end (exclusive)")],
    calendar_id: CalendarId = "primary",
    query: Annotated[str | None, Field(max_length=500, description="free text to match")] = None,
    max_results: Annotated[int, Field(ge=1, le=250)] = 50,
    page_token: PageToken | None = None,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, ListEventsResult]:
    """List events in a time window of the connected Google Calendar, soonest first (recurring events expanded)."""

    async def operation(api: ProviderSession) -> ListEventsOk:
        if time_max <= time_min:
            raise failures.InvalidInputError("time_range_empty", "time_max must be after time_min.")
        found = await google.list_events(
            api,
            calendar_id=calendar_id,
            time_min=time_min,
            time_max=time_max,
            max_results=max_results,
            page_token=page_token,
            query=query,
        )
        return ListEventsOk(calendar_id=calendar_id, events=found.events, next_page_token=found.next_page_token)

    return await Toolset.of(ctx).run(ctx, "google", operation, account=account)


TOOLS = [
    Tool("gmail.search_messages", search_messages, title="Search Gmail", read_only=True, idempotent=True),
    Tool("gmail.send_message", send_message, title="Send an email with Gmail", read_only=False),
    Tool("calendar.create_event", create_event, title="Create a Google Calendar event", read_only=False, idempotent=True),
    Tool("calendar.list_events", list_events, title="List Google Calendar events", read_only=True, idempotent=True),
]
