"""Zendesk on the customer's own subdomain: JSON token requests, rotation that deletes the previous access and
refresh tokens, 30 min / 30 day lifetimes, 400 `invalid_grant`, 401 `invalid_token`, 429 + Retry-After with a
text/plain body, and an `Idempotency-Key` header on ticket creation.

Reference: support.zendesk.com articles 9182123625370 (refresh) and 10212201463962 (lifetimes);
developer.zendesk.com …/tickets (idempotency, cursor pagination); zendesk-java-client `IdempotencyUtil`.
"""

from __future__ import annotations

from typing import Any, Literal

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
    RevocationRequest,
    Verdict,
    json_body,
    response_json,
    retry_after_seconds,
)

SPEC = ProviderSpec(
    name="zendesk",
    display_name="Zendesk",
    # Every customer has its own host: GRANTKEEPER_ZENDESK_API_BASE_URL is required, and OAuth uses it too.
    api_base_url="",
    oauth_base_url="",
    base_url_example="https://yourcompany.zendesk.com",
    authorize_path="/oauth/authorizations/new",
    token_path="/oauth/tokens",
    client_auth_method="client_secret_post",
    token_body_encoding="json",
    scopes=["read", "write"],
    default_access_ttl_seconds=1800,
    default_refresh_ttl_seconds=2592000,
    rotates_refresh_token=True,
    health_probe=HealthProbe(method="GET", path="/api/v2/users/me"),
    docs_url="https://support.zendesk.com/hc/en-us/articles/9182123625370",
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_LOOKUP_HEADER = "x-idempotency-lookup"


def _error_text(body: Any) -> tuple[str, str]:
    """(error code, human description) of a Zendesk JSON error body."""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    description = body.get("description") or body.get("error_description") or ""
    if isinstance(error, dict):  # {"error": {"title": …, "message": …}} on some endpoints
        description = description or error.get("message") or error.get("title") or ""
        error = error.get("title")
    return str(error or ""), str(description)[:300]


def _record_invalid_message(body: Any, description: str) -> str:
    details = body.get("details") if isinstance(body, dict) else None
    parts = []
    if isinstance(details, dict):
        for field, problems in details.items():
            for problem in problems if isinstance(problems, list) else [problems]:
                text = problem.get("description") if isinstance(problem, dict) else problem
                parts.append(str(text or field))
    return ((description or "Record validation errors") + (": " + "; ".join(parts) if parts else ""))[:500]


class Zendesk(Provider):
    spec = SPEC

    def classify_api_response(self, response: httpx2.Response) -> Classification:
        status = response.status_code
        if status < 400:
            return OK
        body = json_body(response)
        error, description = _error_text(body)
        if status == 401:
            return Classification(Verdict.AUTH_FAILED, error or "invalid_token", "Zendesk did not accept the token.")
        if status == 429:
            # The body is text/plain ("Number of allowed API requests per minute exceeded").
            return Classification(
                Verdict.RATE_LIMITED, "rate_limited", "Zendesk is rate limiting these calls.", retry_after_seconds(response)
            )
        if status == 403:
            return Classification(
                Verdict.FORBIDDEN, error or "forbidden", description or "Zendesk refused: the user or the grant lacks permission."
            )
        if status == 400 and error == "IdempotentRequestError":
            return Classification(
                Verdict.INVALID_INPUT,
                "idempotency_key_reused",
                "This idempotency key was already used for a different request; use a new key for a different ticket.",
            )
        if status == 422:
            return Classification(Verdict.INVALID_INPUT, error or "record_invalid", _record_invalid_message(body, description))
        if status == 404:
            return Classification(Verdict.NOT_FOUND, "not_found", description or "Zendesk says it does not exist.")
        if status == 400:
            return Classification(Verdict.INVALID_INPUT, error or "bad_request", description or "Zendesk rejected the request.")
        if status == 503 and retry_after_seconds(response) is not None:
            return Classification(
                Verdict.TRANSIENT, "unavailable", "Zendesk is unavailable for a moment.", retry_after_seconds(response)
            )
        return super().classify_api_response(response)

    def revocation(self, spec: ProviderSpec, grant: GrantToEnd) -> RevocationRequest | str:
        # Deleting the token the request is made with ends it (and its refresh token).
        if not spec.api_base_url:
            return UNSUPPORTED
        return RevocationRequest(
            "DELETE",
            spec.api_base_url + "/api/v2/oauth/tokens/current.json",
            headers={"Authorization": f"Bearer {grant.access_token}"},
        )

    def revocation_accepted(self, response: httpx2.Response) -> bool:
        return response.status_code in (200, 204, 401)  # 401: Zendesk no longer knows the token

    def identity_from_probe(self, body: Any) -> tuple[str | None, dict[str, Any]]:
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, dict) or user.get("id") is None:
            return None, {}
        return str(user["id"]), {
            "user_id": user["id"],
            "name": user.get("name"),
            "email": user.get("email"),
            "role": user.get("role"),
        }

    def describe_identity(self, provider_account_id: str, identity: dict[str, Any]) -> str:
        who = identity.get("email") or identity.get("name")
        return f"{who} (user {provider_account_id})" if who else f"user {provider_account_id}"


PROVIDER = Zendesk()


class Ticket(BaseModel):
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
    def from_api(cls, ticket: dict[str, Any]) -> Ticket:
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


class CreatedTicket(BaseModel):
    ticket: Ticket
    created: bool  # false when Zendesk replayed the ticket created earlier with the idempotency key


class TicketPage(BaseModel):
    tickets: list[Ticket]
    has_more: bool
    next_cursor: str | None = None


Priority = Literal["low", "normal", "high", "urgent"]
TicketType = Literal["problem", "incident", "question", "task"]


async def create_ticket(
    api: ApiSession,
    *,
    subject: str,
    body: str,
    public: bool = True,
    priority: Priority | None = None,
    type: TicketType | None = None,
    tags: list[str] | None = None,
    idempotency_key: str,
) -> CreatedTicket:
    """Create a ticket at most once per key (Zendesk keeps keys for 2 hours).

    The Idempotency-Key header makes the POST safe to repeat, so the server may retry it after an unclear
    failure; a replay comes back as the original answer with `x-idempotency-lookup: hit`.
    """
    ticket: dict[str, Any] = {"subject": subject, "comment": {"body": body, "public": public}}
    if priority:
        ticket["priority"] = priority
    if type:
        ticket["type"] = type
    if tags:
        ticket["tags"] = list(tags)
    call = ApiCall(
        "POST", "/api/v2/tickets", json={"ticket": ticket}, headers={IDEMPOTENCY_HEADER: idempotency_key}, idempotent=True
    )
    response = await api.send(call)
    replayed = response.headers.get(IDEMPOTENCY_LOOKUP_HEADER, "").lower() == "hit"
    return CreatedTicket(ticket=Ticket.from_api(response_json(response)["ticket"]), created=not replayed)


async def list_tickets(api: ApiSession, *, page_size: int, after: str | None = None, newest_first: bool = False) -> TicketPage:
    """One page of tickets, oldest first unless `newest_first` (cursor pagination)."""
    params: dict[str, Any] = {"page[size]": page_size}
    if after:
        params["page[after]"] = after
    if newest_first:
        params["sort"] = "-id"
    page = response_json(await api.send(ApiCall("GET", "/api/v2/tickets", params=params)))
    meta = page.get("meta") or {}
    has_more = bool(meta.get("has_more"))
    return TicketPage(
        tickets=[Ticket.from_api(t) for t in page.get("tickets") or []],
        has_more=has_more,
        next_cursor=meta.get("after_cursor") if has_more else None,
    )
