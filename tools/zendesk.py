"""Zendesk tools: create a ticket (at most once per idempotency key), list tickets page by page."""

from __future__ import annotations

import uuid
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from providers import zendesk
from server.execute import ProviderSession
from server.results import Ok, result_model
from tools.toolset import AccountLabel, Tool, Toolset

IdempotencyKey = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="repeat a call with the same key (within 2 hours) and at most one ticket is created",
    ),
]
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_./:-]{1,80}$")]


class CreateTicketOk(Ok):
    ticket: zendesk.Ticket
    created: bool = Field(description="false when Zendesk replayed the ticket created earlier with this key")
    idempotency_key: str

    def summary(self) -> str:
        verb = "Created" if self.created else "Already existed:"
        return f"{verb} ticket #{self.ticket.id} {self.ticket.subject!r} ({self.ticket.status})"


class ListTicketsOk(Ok):
    tickets: list[zendesk.Ticket]
    has_more: bool
    next_cursor: str | None = Field(default=None, description="pass as after_cursor for the next page")

    def summary(self) -> str:
        lines = [f"{len(self.tickets)} ticket(s)" + (" (more available)" if self.has_more else "")]
        lines += [f"#{t.id} [{t.status}] {t.subject}" for t in self.tickets]
        return "\n".join(lines)


CreateTicketResult = result_model(CreateTicketOk)
ListTicketsResult = result_model(ListTicketsOk)


async def create_ticket(
    ctx: Context,
    subject: Annotated[str, Field(min_length=1, max_length=255)],
    body: Annotated[str, Field(min_length=1, max_length=65_000, description="the first comment")],
    priority: zendesk.Priority | None = None,
    type: zendesk.TicketType | None = None,  # Zendesk's own field name
    tags: Annotated[list[Tag], Field(max_length=20)] = [],  # noqa: B006
    public: Annotated[bool, Field(description="whether the requester can see the first comment")] = True,
    idempotency_key: IdempotencyKey | None = None,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, CreateTicketResult]:
    """Create a ticket in the connected Zendesk as the connected user.

    Safe to retry: pass the same idempotency_key (within 2 hours) and at most one ticket is created."""
    key = idempotency_key or uuid.uuid4().hex

    async def operation(api: ProviderSession) -> CreateTicketOk:
        created = await zendesk.create_ticket(
            api, subject=subject, body=body, public=public, priority=priority, type=type, tags=list(tags), idempotency_key=key
        )
        return CreateTicketOk(ticket=created.ticket, created=created.created, idempotency_key=key)

    return await Toolset.of(ctx).run(ctx, "zendesk", operation, account=account)


async def list_tickets(
    ctx: Context,
    page_size: Annotated[int, Field(ge=1, le=100)] = 25,
    after_cursor: Annotated[str | None, Field(max_length=500, description="a previous call's next_cursor")] = None,
    newest_first: bool = False,
    account: AccountLabel = None,
) -> Annotated[CallToolResult, ListTicketsResult]:
    """List tickets in the connected Zendesk, a page at a time (oldest first unless newest_first)."""

    async def operation(api: ProviderSession) -> ListTicketsOk:
        page = await zendesk.list_tickets(api, page_size=page_size, after=after_cursor, newest_first=newest_first)
        return ListTicketsOk(tickets=page.tickets, has_more=page.has_more, next_cursor=page.next_cursor)

    return await Toolset.of(ctx).run(ctx, "zendesk", operation, account=account)


TOOLS = [
    Tool("zendesk.create_ticket", create_ticket, title="Create a Zendesk ticket", read_only=False, idempotent=True),
    Tool("zendesk.list_tickets", list_tickets, title="List Zendesk tickets", read_only=True, idempotent=True),
]
