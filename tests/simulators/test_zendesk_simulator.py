"""The Zendesk simulator over real loopback HTTP: JSON token requests, rotation with reuse detection, Zendesk's
error shapes, the per-minute budget, idempotent ticket creation and cursor pagination."""

from __future__ import annotations

from sim_helpers import bearer, zendesk_refresh

TICKETS = "/api/v2/tickets"


def new_ticket(subject: str = "Checkout broken", body: str = "Safari cannot pay.", **extra: object) -> dict:
    return {"ticket": {"subject": subject, "comment": {"body": body}, **extra}}


def test_refresh_rotates_and_deletes_the_previous_access_and_refresh_tokens(zendesk_http, zendesk):
    first = zendesk.issue_grant()

    rotated = zendesk_refresh(zendesk_http, first.refresh_token)
    body = rotated.json()
    assert rotated.status_code == 200
    assert body["token_type"] == "bearer" and body["scope"] == "read write"
    assert body["expires_in"] == 1800 and body["refresh_token_expires_in"] == 2592000
    assert body["refresh_token"] != first.refresh_token

    old = zendesk_http.get("/api/v2/users/me", headers=bearer(first.access_token))
    assert old.status_code == 401
    assert old.json() == {
        "error": "invalid_token",
        "error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons.",
    }
    assert zendesk_http.get("/api/v2/users/me", headers=bearer(body["access_token"])).status_code == 200
    assert zendesk.token_request_formats == ["json"]


def test_a_form_encoded_refresh_is_refused_unless_allowed(zendesk_http, zendesk):
    grant = zendesk.issue_grant()
    fields = {
        "grant_type": "refresh_token",
        "refresh_token": grant.refresh_token,
        "client_id": "sim-zendesk-client",
        "client_secret": "sim-zendesk-secret",
    }
    refused = zendesk_http.post("/oauth/tokens", data=fields)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"

    zendesk_http.post("/_sim/faults", json={"fault": "accept_form_token_requests", "enabled": True}).raise_for_status()
    assert zendesk_http.post("/oauth/tokens", data=fields).status_code == 200
    assert zendesk_http.get("/_sim/stats").json()["token_request_formats"] == {"form": 2}


def test_reusing_a_rotated_refresh_token_revokes_the_family(zendesk_http, zendesk):
    first = zendesk.issue_grant()
    second = zendesk_refresh(zendesk_http, first.refresh_token).json()

    reused = zendesk_refresh(zendesk_http, first.refresh_token)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert zendesk_refresh(zendesk_http, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert zendesk_http.get("/api/v2/users/me", headers=bearer(second["access_token"])).status_code == 401
    assert zendesk.counters.reuse_detections == 1


def test_refresh_token_dies_after_thirty_days_and_bad_clients_are_401(zendesk_http, zendesk):
    grant = zendesk.issue_grant()
    wrong = zendesk_http.post(
        "/oauth/tokens",
        json={
            "grant_type": "refresh_token",
            "refresh_token": grant.refresh_token,
            "client_id": "sim-zendesk-client",
            "client_secret": "nope",
        },
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    zendesk.advance_clock(30 * 24 * 3600 + 1)
    assert zendesk_refresh(zendesk_http, grant.refresh_token).json()["error"] == "invalid_grant"


def test_missing_token_and_suspended_user_have_their_own_answers(zendesk_http, zendesk):
    token = zendesk.issue_grant().access_token
    assert zendesk_http.get("/api/v2/users/me").json() == {"error": "Couldn't authenticate you"}
    zendesk.deactivate()
    suspended = zendesk_http.get("/api/v2/users/me", headers=bearer(token))
    assert suspended.status_code == 403 and suspended.json()["error"] == "Forbidden"


def test_rate_limit_is_429_text_plain_with_retry_after(zendesk_http, zendesk):
    token = zendesk.issue_grant().access_token
    zendesk.rate_limit(count=1, retry_after=7)
    limited = zendesk_http.get(TICKETS, headers=bearer(token))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.headers["content-type"].startswith("text/plain")
    assert limited.text == "Number of allowed API requests per minute exceeded"


def test_the_per_minute_budget_is_counted_in_headers(zendesk_http, zendesk):
    token = zendesk.issue_grant().access_token
    zendesk_http.post("/_sim/faults", json={"fault": "requests_per_minute", "limit": 2}).raise_for_status()
    first = zendesk_http.get(TICKETS, headers=bearer(token))
    assert (first.headers["x-rate-limit"], first.headers["x-rate-limit-remaining"]) == ("2", "1")
    zendesk_http.get(TICKETS, headers=bearer(token))
    third = zendesk_http.get(TICKETS, headers=bearer(token))
    assert third.status_code == 429 and 1 <= int(third.headers["retry-after"]) <= 60
    zendesk.advance_clock(61)
    assert zendesk_http.get(TICKETS, headers=bearer(token)).status_code == 200


def test_the_same_idempotency_key_replays_the_original_ticket(zendesk_http, zendesk):
    token = zendesk.issue_grant().access_token
    headers = {**bearer(token), "Idempotency-Key": "key-123"}
    first = zendesk_http.post(TICKETS, json=new_ticket(), headers=headers)
    second = zendesk_http.post(TICKETS, json=new_ticket(), headers=headers)

    assert first.status_code == second.status_code == 201
    assert (first.headers["x-idempotency-lookup"], second.headers["x-idempotency-lookup"]) == ("miss", "hit")
    assert first.json() == second.json()
    assert [t["subject"] for t in zendesk.tickets()].count("Checkout broken") == 1
    assert zendesk.idempotency_stats() == {"hits": 1, "misses": 1, "mismatches": 0}


def test_a_reused_key_with_another_body_is_an_idempotent_request_error(zendesk_http, zendesk):
    token = zendesk.issue_grant().access_token
    headers = {**bearer(token), "Idempotency-Key": "key-456"}
    zendesk_http.post(TICKETS, json=new_ticket(), headers=headers).raise_for_status()
    other = zendesk_http.post(TICKETS, json=new_ticket(subject="Something else"), headers=headers)
    assert other.status_code == 400
    assert other.json() == {
        "error": "IdempotentRequestError",
        "description": "Request parameters don't match the given idempotency key",
    }


def test_idempotency_keys_are_forgotten_after_two_hours(zendesk_http, zendesk):
    token = zendesk.issue_grant(access_ttl=3 * 3600).access_token
    headers = {**bearer(token), "Idempotency-Key": "key-789"}
    zendesk_http.post(TICKETS, json=new_ticket(), headers=headers).raise_for_status()
    zendesk.advance_clock(2 * 3600 + 1)
    later = zendesk_http.post(TICKETS, json=new_ticket(), headers=headers)
    assert later.headers["x-idempotency-lookup"] == "miss"
    assert [t["subject"] for t in zendesk.tickets()].count("Checkout broken") == 2


def test_a_ticket_without_a_description_is_record_invalid(zendesk_http, zendesk):
    token = zendesk.issue_grant().access_token
    invalid = zendesk_http.post(TICKETS, json={"ticket": {"subject": "x", "priority": "meh"}}, headers=bearer(token))
    assert invalid.status_code == 422 and invalid.json()["error"] == "RecordInvalid"
    assert set(invalid.json()["details"]) == {"description", "priority"}


def test_cursor_pagination_walks_every_ticket_once(zendesk_http, zendesk):
    token = zendesk.issue_grant().access_token
    for i in range(3):
        zendesk.add_ticket(f"extra {i}", "seeded")
    seen, after = [], None
    while True:
        params = {"page[size]": 2, **({"page[after]": after} if after else {})}
        page = zendesk_http.get(TICKETS, params=params, headers=bearer(token)).json()
        seen += [t["id"] for t in page["tickets"]]
        if not page["meta"]["has_more"]:
            assert page["links"]["next"] is None
            break
        after = page["meta"]["after_cursor"]
    assert seen == sorted(t["id"] for t in zendesk.tickets())
    newest = zendesk_http.get(TICKETS, params={"page[size]": 1, "sort": "-id"}, headers=bearer(token)).json()
    assert newest["tickets"][0]["id"] == max(seen)
    too_big = zendesk_http.get(TICKETS, params={"page[size]": 101}, headers=bearer(token))
    assert too_big.status_code == 400 and too_big.json()["error"] == "InvalidPaginationParameter"
    bad_cursor = zendesk_http.get(TICKETS, params={"page[size]": 2, "page[after]": "%%%"}, headers=bearer(token))
    assert bad_cursor.status_code == 400


def test_control_api_lists_and_seeds_tickets(zendesk_http, zendesk):
    assert zendesk_http.post("/_sim/tickets", json={"subject": "Seeded", "priority": "high"}).status_code == 201
    subjects = [t["subject"] for t in zendesk_http.get("/_sim/tickets").json()["tickets"]]
    assert subjects[-1] == "Seeded"
    stats = zendesk_http.get("/_sim/stats").json()
    assert stats["tickets"] == len(subjects) and stats["idempotency"] == {"hits": 0, "misses": 0, "mismatches": 0}
