"""Zendesk tools: tickets are created at most once per Idempotency-Key, even when an answer is lost, and listed
page by page with Zendesk's cursors."""

from __future__ import annotations

import pytest

from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
TICKET = {
    "subject": "Checkout fails on Safari",
    "body": "Customer cannot pay with Safari 17.",
    "priority": "high",
    "tags": ["checkout", "safari"],
}


def created_tickets(zendesk_sim) -> list[dict]:
    return [t for t in zendesk_sim.tickets() if t["subject"] == TICKET["subject"]]


async def test_create_ticket_returns_the_new_ticket(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "zendesk_create_ticket", TICKET)

    assert result["status"] == "ok" and result["created"] is True
    assert result["ticket"]["priority"] == "high" and result["ticket"]["status"] == "new"
    assert result["ticket"]["tags"] == ["checkout", "safari"]
    [stored] = created_tickets(zendesk_sim)
    assert stored["id"] == result["ticket"]["id"] and stored["requester_id"] == 1900000000001
    assert zendesk_sim.idempotency_stats()["misses"] == 1  # a key is sent even when the agent gives none


async def test_a_lost_answer_is_retried_with_the_same_key_and_makes_one_ticket(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())
    zendesk_sim.fail(count=1, status=502, after_processing=True)  # created, but the answer never arrives

    async with mcp_client(runtime) as client:
        result = await call(client, "zendesk_create_ticket", {**TICKET, "idempotency_key": "ticket-lost-1"})

    assert result["status"] == "ok"
    assert len(created_tickets(zendesk_sim)) == 1
    assert result["ticket"]["id"] == created_tickets(zendesk_sim)[0]["id"]
    assert result["created"] is False  # Zendesk replayed the first attempt's answer
    assert zendesk_sim.idempotency_stats() == {"hits": 1, "misses": 1, "mismatches": 0}
    assert zendesk_sim.counters.endpoint("POST /tickets") == 2


async def test_repeating_a_call_with_the_same_key_creates_one_ticket(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())
    arguments = {**TICKET, "idempotency_key": "ticket-repeat-1"}
    async with mcp_client(runtime) as client:
        first = await call(client, "zendesk_create_ticket", arguments)
        second = await call(client, "zendesk_create_ticket", arguments)

    assert (first["created"], second["created"]) == (True, False)
    assert first["ticket"]["id"] == second["ticket"]["id"]
    assert len(created_tickets(zendesk_sim)) == 1


async def test_a_reused_key_with_a_different_ticket_is_invalid_input(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())
    async with mcp_client(runtime) as client:
        await call(client, "zendesk_create_ticket", {**TICKET, "idempotency_key": "ticket-shared-1"})
        other = await call(
            client, "zendesk_create_ticket", {**TICKET, "body": "Another problem entirely.", "idempotency_key": "ticket-shared-1"}
        )

    assert other["status"] == "invalid_input" and other["reason"] == "idempotency_key_reused"
    assert "different request" in other["next_step"]
    assert len(created_tickets(zendesk_sim)) == 1
    assert zendesk_sim.idempotency_stats()["mismatches"] == 1


async def test_list_tickets_pages_with_zendesk_cursors(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())
    for i in range(3):
        zendesk_sim.add_ticket(f"Seeded {i}", "seeded")
    pages = []
    async with mcp_client(runtime) as client:
        cursor = None
        while True:
            page = await call(client, "zendesk_list_tickets", {"page_size": 2, **({"after_cursor": cursor} if cursor else {})})
            pages.append(page)
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        newest = await call(client, "zendesk_list_tickets", {"page_size": 1, "newest_first": True})

    ids = [t["id"] for page in pages for t in page["tickets"]]
    assert ids == sorted(t["id"] for t in zendesk_sim.tickets()) and len(pages) == 3
    assert pages[-1]["next_cursor"] is None
    assert newest["tickets"][0]["subject"] == "Seeded 2"


async def test_an_invalid_ticket_is_invalid_input_with_zendesks_details(runtime, settings, zendesk_sim):
    seed_account(settings, runtime.vault, "zendesk", zendesk_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "zendesk_create_ticket", {"subject": "x", "body": "   "})
    assert result["status"] == "invalid_input" and result["reason"] == "RecordInvalid"
    assert "Description: cannot be blank" in result["next_step"]
