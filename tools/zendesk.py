"""Zendesk tools: create a ticket (at most once per idempotency key), list tickets page by page."""

import uuid
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from providers import zendesk
from server.execute import ProviderSession
from server.results import Ok
from tools import Toolset

IdempotencyKey = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="repeat a call with the same key (within 2 hours) and at most one ticket is created",
    ),
]
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_./:-]{1,80}$")]


class TicketSummary(BaseModel):
    id: int
    subject: str | None = None
    status: str | None = None
    priority: str | None = None
    type: str | None = None
    requester_id: int | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None
    url: str | None = Field(default=None, description="the ticket's API URL")

    @classmethod
    def from_zendesk(cls, ticket: dict[str, Any]) -> "TicketSummary":
        return cls(
            id=ticket["id"],
            subject=ticket.get("subject"),
            status=ticket.get("status"),
            priority=ticket.get("priority"),
            type=ticket.get("type"),
            requester_id=ticket.get("requester_id"),
            tags=list(ticket.get("tags") or []),
            created_at=ticket.get("created_at"),
            updated_at=ticket.get("updated_at"),
            url=ticket.get("url"),
        )


class CreateTicketOk(Ok):
    ticket: TicketSummary
    created: bool = Field(description="false when Zendesk replayed the ticket created earlier with this key")
    idempotency_key: str

    def summary(self) -> str:
        verb = "Created" if self.created else "Already existed:"
        return f"{verb} ticket #{self.ticket.id} {self.ticket.subject!r} ({self.ticket.status})"


class ListTicketsOk(Ok):
    tickets: list[TicketSummary]
    has_more: bool
    next_cursor: str | None = Field(default=None, description="pass as after_cursor for the next page")

    def summary(self) -> str:
        lines = [f"{len(self.tickets)} ticket(s)" + (" (more available)" if self.has_more else "")]
        lines += [f"#{t.id} [{t.status}] {t.subject}" for t in self.tickets]
        return "\n".join(lines)


def register(toolset: Toolset) -> None:
    @toolset.tool("zendesk.create_ticket", title="Create a Zendesk ticket", ok=CreateTicketOk, read_only=False, idempotent=True)
    async def create_ticket(
        subject: Annotated[str, Field(min_length=1, max_length=255)],
        body: Annotated[str, Field(min_length=1, max_length=65_000, description="the first comment")],
        priority: Literal["low", "normal", "high", "urgent"] | None = None,
        type: Literal["problem", "incident", "question", "task"] | None = None,  # Zendesk's own field name
        tags: Annotated[list[Tag], Field(max_length=20)] = [],  # noqa: B006
        public: Annotated[bool, Field(description="whether the requester can see the first comment")] = True,
        idempotency_key: IdempotencyKey | None = None,
        ctx: Context = None,
    ):
        """Create a ticket in the connected Zendesk as the connected user.

        Safe to retry: pass the same idempotency_key (within 2 hours) and at most one ticket is created."""
        key = idempotency_key or uuid.uuid4().hex
        ticket: dict[str, Any] = {"subject": subject, "comment": {"body": body, "public": public}}
        for name, value in (("priority", priority), ("type", type)):
            if value:
                ticket[name] = value
        if tags:
            ticket["tags"] = list(tags)

        async def operation(api: ProviderSession) -> CreateTicketOk:
            created_ticket, created = await zendesk.create_ticket(api, ticket=ticket, idempotency_key=key)
            return CreateTicketOk(ticket=TicketSummary.from_zendesk(created_ticket), created=created, idempotency_key=key)

        return await toolset.run(ctx, "zendesk", operation, tool="zendesk.create_ticket")

    @toolset.tool("zendesk.list_tickets", title="List Zendesk tickets", ok=ListTicketsOk, read_only=True, idempotent=True)
    async def list_tickets(
        page_size: Annotated[int, Field(ge=1, le=100)] = 25,
        after_cursor: Annotated[str | None, Field(max_length=500, description="a previous call's next_cursor")] = None,
        newest_first: bool = False,
        ctx: Context = None,
    ):
        """List tickets in the connected Zendesk, a page at a time (oldest first unless newest_first)."""

        async def operation(api: ProviderSession) -> ListTicketsOk:
            page = await zendesk.list_tickets(api, page_size=page_size, after=after_cursor, sort="-id" if newest_first else None)
            meta = page.get("meta") or {}
            has_more = bool(meta.get("has_more"))
            return ListTicketsOk(
                tickets=[TicketSummary.from_zendesk(t) for t in page.get("tickets") or []],
                has_more=has_more,
                next_cursor=meta.get("after_cursor") if has_more else None,
            )

        return await toolset.run(ctx, "zendesk", operation, tool="zendesk.list_tickets")
