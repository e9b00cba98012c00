"""Google tools: bounded Gmail search, a send that is never repeated blindly, and Calendar events created at most
once per idempotency key (the event id is derived from it)."""

from __future__ import annotations

import pytest

from providers.google import event_id_for
from simulators import GoogleSimulator
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
MAIL = {"to": ["bob@example.com"], "cc": ["carol@example.org"], "subject": "Deploy finished", "body": "All green."}
EVENT = {
    "summary": "Design review",
    "start": "2026-05-04T10:00:00+02:00",
    "end": "2026-05-04T11:00:00+02:00",
    "attendees": ["bob@example.com"],
}


async def test_search_returns_subject_sender_and_snippet_with_one_call_per_message(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", {"query": "is:unread", "max_results": 10})

    assert result["status"] == "ok" and result["result_size_estimate"] == 2
    assert {m["subject"] for m in result["messages"]} == {"Quarterly report", "Security alert: urllib3"}
    assert any(m["sender"] == "Bob Builder <bob@example.com>" and "Revenue" in m["snippet"] for m in result["messages"])
    assert google_sim.counters.endpoint("messages.list") == 1
    assert google_sim.counters.endpoint("messages.get") == 2


async def test_search_never_fetches_more_messages_than_asked_and_pages_on(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    for i in range(30):
        google_sim.seed_message("alice@example.com", sender="bulk@example.com", subject=f"Newsletter {i}", body="news")
    async with mcp_client(runtime) as client:
        first = await call(client, "gmail_search_messages", {"query": "from:bulk", "max_results": 25})
        rest = await call(
            client, "gmail_search_messages", {"query": "from:bulk", "max_results": 25, "page_token": first["next_page_token"]}
        )
        too_many = await client.call_tool("gmail_search_messages", {"query": "x", "max_results": 500})

    assert len(first["messages"]) == 25 and len(rest["messages"]) == 5 and rest["next_page_token"] is None
    assert google_sim.counters.endpoint("messages.get") == 30
    assert too_many.is_error and google_sim.counters.endpoint("messages.list") == 2


async def test_send_message_builds_an_rfc822_mail(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_send_message", MAIL)

    assert result["status"] == "ok" and result["label_ids"] == ["SENT"]
    [sent] = google_sim.sent_messages()
    assert sent == {
        "id": result["id"],
        "from": "alice@example.com",
        "to": "bob@example.com",
        "cc": "carol@example.org",
        "subject": "Deploy finished",
        "body": "All green.",
    }


async def test_a_send_whose_answer_is_lost_is_outcome_unknown_and_sent_exactly_once(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    google_sim.fail(count=1, status=503, after_processing=True)  # Gmail sends it, the answer never arrives

    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_send_message", MAIL)

    assert result["status"] == "upstream_error"
    assert result["outcome_unknown"] is True and result["retryable"] is False
    assert len(google_sim.sent_messages()) == 1
    assert google_sim.counters.endpoint("messages.send") == 1


async def test_a_header_injection_in_the_subject_is_refused_before_google(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await client.call_tool("gmail_send_message", {**MAIL, "subject": "Hi\r\nBcc: eve@example.com"})
    assert result.is_error and google_sim.counters.api_requests == 0


async def test_creating_an_event_twice_with_one_key_makes_one_event(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    arguments = {**EVENT, "idempotency_key": "review-2026-05-04"}
    async with mcp_client(runtime) as client:
        first = await call(client, "calendar_create_event", arguments)
        second = await call(client, "calendar_create_event", arguments)

    assert (first["status"], second["status"]) == ("ok", "ok")
    assert (first["created"], second["created"]) == (True, False)
    assert first["event"]["id"] == second["event"]["id"] == event_id_for("review-2026-05-04")
    assert first["event"]["attendees"] == ["bob@example.com"]
    assert len(google_sim.events()) == 1


async def test_a_lost_event_answer_is_retried_and_finds_the_event_instead_of_duplicating_it(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    google_sim.fail(count=1, status=503, after_processing=True)

    async with mcp_client(runtime) as client:
        result = await call(client, "calendar_create_event", {**EVENT, "idempotency_key": "lost-answer-1"})

    assert result["status"] == "ok" and result["created"] is False  # the retry met the first attempt's event
    assert len(google_sim.events()) == 1
    assert google_sim.counters.endpoint("events.insert") == 2 and google_sim.counters.endpoint("events.get") == 1


async def test_a_key_reused_for_a_different_event_is_invalid_input(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        await call(client, "calendar_create_event", {**EVENT, "idempotency_key": "shared-key-1"})
        other = await call(client, "calendar_create_event", {**EVENT, "summary": "Retro", "idempotency_key": "shared-key-1"})
    assert other["status"] == "invalid_input" and other["reason"] == "idempotency_key_reused"
    assert [e["summary"] for e in google_sim.events()] == ["Design review"]


async def test_an_event_that_ends_before_it_starts_never_reaches_google(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "calendar_create_event", {**EVENT, "end": "2026-05-04T09:00:00+02:00"})
    assert result["status"] == "invalid_input" and result["reason"] == "time_range_empty"
    assert google_sim.counters.api_requests == 0


async def test_list_events_returns_the_window_soonest_first(runtime, settings, google_sim):
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        for hour, title in ((14, "Later"), (9, "Earlier"), (20, "Outside")):
            await call(
                client,
                "calendar_create_event",
                {"summary": title, "start": f"2026-05-04T{hour:02d}:00:00Z", "end": f"2026-05-04T{hour:02d}:30:00Z"},
            )
        result = await call(
            client, "calendar_list_events", {"time_min": "2026-05-04T08:00:00Z", "time_max": "2026-05-04T18:00:00Z"}
        )
        unknown = await call(
            client,
            "calendar_list_events",
            {"time_min": "2026-05-04T08:00:00Z", "time_max": "2026-05-04T18:00:00Z", "calendar_id": "team@example.com"},
        )

    assert [e["summary"] for e in result["events"]] == ["Earlier", "Later"]
    assert result["events"][0]["organizer"] == "alice@example.com"
    assert unknown["status"] == "invalid_input" and unknown["reason"] == "not_found"


async def test_a_message_deleted_between_list_and_get_is_left_out(runtime, settings, google_server):
    class DeletesAfterListing(GoogleSimulator):
        async def _list_messages(self, request, grant):
            response = await super()._list_messages(request, grant)
            with self._data_lock:  # the newest message goes to the bin right after it was listed
                box = self._mailbox("alice@example.com")
                box.remove(max(box, key=lambda m: m.internal_date))
            return response

    google_server.app = google_sim = DeletesAfterListing()
    seed_account(settings, runtime.vault, "google", google_sim.issue_grant())
    async with mcp_client(runtime) as client:
        result = await call(client, "gmail_search_messages", {"query": "in:inbox", "max_results": 10})

    assert result["status"] == "ok"
    assert len(result["messages"]) == 2 and google_sim.counters.endpoint("messages.get") == 3
