"""The Google simulator over real loopback HTTP: refresh without rotation, Google's error shapes, usage limits,
Gmail search/get/send and Calendar events with client-chosen ids."""

from __future__ import annotations

import base64
from email.message import EmailMessage

from sim_helpers import bearer, google_refresh

from simulators import GoogleSimulator

GMAIL = "/gmail/v1/users/me"
EVENTS = "/calendar/v3/calendars/primary/events"


def raw_mail(to: str | None, subject: str, body: str) -> str:
    message = EmailMessage()
    if to:
        message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return base64.urlsafe_b64encode(message.as_bytes()).decode().rstrip("=")


def event(
    event_id: str | None = None, start: str = "2026-05-04T10:00:00+02:00", end: str = "2026-05-04T11:00:00+02:00", **extra: object
) -> dict:
    body = {"summary": "Design review", "start": {"dateTime": start}, "end": {"dateTime": end}, **extra}
    if event_id:
        body["id"] = event_id
    return body


def test_refresh_keeps_the_refresh_token_and_answers_without_one(google_http, google):
    grant = google.issue_grant()

    first = google_refresh(google_http, grant.refresh_token)
    second = google_refresh(google_http, grant.refresh_token)  # using it again is normal at Google

    assert first.status_code == second.status_code == 200
    body = first.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["access_token"].startswith("ya29.") and body["expires_in"] == 3599
    assert body["token_type"] == "Bearer" and "gmail.send" in body["scope"]
    # Old access tokens stay valid until they expire; nothing was rotated, nothing was detected.
    for token in (grant.access_token, body["access_token"], second.json()["access_token"]):
        assert google_http.get(f"{GMAIL}/profile", headers=bearer(token)).status_code == 200
    stats = google_http.get("/_sim/stats").json()
    assert stats["refreshes_ok"] == 2 and stats["reuse_detections"] == 0


def test_revoked_grant_is_invalid_grant_at_the_token_endpoint_and_401_on_the_api(google_http, google):
    grant = google.issue_grant()
    google.revoke()

    refused = google_refresh(google_http, grant.refresh_token)
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    api = google_http.get(f"{GMAIL}/profile", headers=bearer(grant.access_token))
    assert api.status_code == 401
    error = api.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and error["errors"][0]["reason"] == "authError"
    assert error["message"].startswith("Request had invalid authentication credentials.")
    assert 'error="invalid_token"' in api.headers["www-authenticate"]


def test_expired_access_token_gets_the_same_401_as_a_revoked_one(google_http, google):
    grant = google.issue_grant()
    google.expire_access_tokens()
    assert (
        google_http.get(f"{GMAIL}/profile", headers=bearer(grant.access_token)).json()["error"]["errors"][0]["reason"]
        == "authError"
    )
    assert google_http.get(f"{GMAIL}/profile").json()["error"]["errors"][0]["reason"] == "required"


def test_testing_apps_get_refresh_tokens_that_die_after_seven_days(google_server, google_http):
    google = google_server.app = GoogleSimulator(publishing_status="testing")
    grant = google.issue_grant()
    assert grant.refresh_token_expires_in == 7 * 24 * 3600
    google.advance_clock(6 * 24 * 3600)
    assert google_refresh(google_http, grant.refresh_token).status_code == 200
    google.advance_clock(24 * 3600 + 1)
    assert google_refresh(google_http, grant.refresh_token).json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_invalid_client_401(google_http, google):
    grant = google.issue_grant()
    response = google_http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": grant.refresh_token,
            "client_id": "sim-google-client",
            "client_secret": "nope",
        },
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_rate_limits_are_usage_limits_errors_without_retry_after(google_http, google):
    token = google.issue_grant().access_token
    google.rate_limit(count=1, retry_after=30)  # Google sends no Retry-After, whatever the fault says
    limited = google_http.get(f"{GMAIL}/messages", headers=bearer(token))
    assert limited.status_code == 403 and "retry-after" not in limited.headers
    item = limited.json()["error"]["errors"][0]
    assert (item["domain"], item["reason"]) == ("usageLimits", "userRateLimitExceeded")

    google.rate_limit(count=1, status=429)
    limited = google_http.get(f"{GMAIL}/messages", headers=bearer(token))
    assert limited.status_code == 429 and "retry-after" not in limited.headers
    assert limited.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_gmail_per_user_quota_counts_units_per_method(google_http, google):
    token = google.issue_grant().access_token
    google.set_user_quota(10)  # messages.list costs 5 units
    assert google_http.get(f"{GMAIL}/messages", headers=bearer(token)).status_code == 200
    assert google_http.get(f"{GMAIL}/messages", headers=bearer(token)).status_code == 200
    third = google_http.get(f"{GMAIL}/messages", headers=bearer(token))
    assert third.status_code == 403 and third.json()["error"]["errors"][0]["reason"] == "userRateLimitExceeded"
    google.advance_clock(61)
    assert google_http.get(f"{GMAIL}/messages", headers=bearer(token)).status_code == 200


def test_search_lists_ids_and_get_returns_only_the_requested_headers(google_http, google):
    token = google.issue_grant().access_token
    listing = google_http.get(f"{GMAIL}/messages", params={"q": "from:bob quarterly"}, headers=bearer(token)).json()
    assert listing["resultSizeEstimate"] == 1 and list(listing["messages"][0]) == ["id", "threadId"]

    message = google_http.get(
        f"{GMAIL}/messages/{listing['messages'][0]['id']}",
        params={"format": "metadata", "metadataHeaders": ["Subject", "From"]},
        headers=bearer(token),
    ).json()
    assert {h["name"] for h in message["payload"]["headers"]} == {"Subject", "From"}
    assert "Revenue is up" in message["snippet"] and "body" not in message["payload"]
    missing = google_http.get(f"{GMAIL}/messages/0123456789abcdef", headers=bearer(token))
    assert missing.status_code == 404 and missing.json()["error"]["errors"][0]["reason"] == "notFound"


def test_search_pages_with_next_page_token(google_http, google):
    token = google.issue_grant().access_token
    first = google_http.get(f"{GMAIL}/messages", params={"maxResults": 2}, headers=bearer(token)).json()
    rest = google_http.get(
        f"{GMAIL}/messages", params={"maxResults": 2, "pageToken": first["nextPageToken"]}, headers=bearer(token)
    ).json()
    assert len(first["messages"]) == 2 and len(rest["messages"]) == 1 and "nextPageToken" not in rest


def test_send_stores_the_mail_as_sent_from_the_account(google_http, google):
    token = google.issue_grant().access_token
    sent = google_http.post(
        f"{GMAIL}/messages/send", json={"raw": raw_mail("bob@example.com", "Hi", "Hello Bob")}, headers=bearer(token)
    )
    assert sent.status_code == 200 and sent.json()["labelIds"] == ["SENT"]
    assert google.sent_messages() == [
        {
            "id": sent.json()["id"],
            "from": "alice@example.com",
            "to": "bob@example.com",
            "cc": "",
            "subject": "Hi",
            "body": "Hello Bob",
        }
    ]
    no_recipient = google_http.post(f"{GMAIL}/messages/send", json={"raw": raw_mail(None, "Hi", "x")}, headers=bearer(token))
    assert no_recipient.status_code == 400 and no_recipient.json()["error"]["message"] == "Recipient address required"


def test_missing_scope_is_403_insufficient_permissions(google_http, google):
    token = google.issue_grant(scopes=["https://www.googleapis.com/auth/gmail.readonly"]).access_token
    refused = google_http.post(f"{GMAIL}/messages/send", json={"raw": raw_mail("b@example.com", "s", "b")}, headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"
    assert google.sent_messages() == []


def test_calendar_event_ids_are_client_chosen_and_a_duplicate_is_409(google_http, google):
    token = google.issue_grant().access_token
    created = google_http.post(EVENTS, json=event("grantkeeper0001"), headers=bearer(token))
    assert created.status_code == 200 and created.json()["id"] == "grantkeeper0001"
    assert created.json()["organizer"] == {"email": "alice@example.com", "self": True}

    again = google_http.post(EVENTS, json=event("grantkeeper0001", summary="Another"), headers=bearer(token))
    assert again.status_code == 409
    assert again.json()["error"]["errors"][0] == {
        "message": "The requested identifier already exists.",
        "domain": "global",
        "reason": "duplicate",
    }
    assert google_http.get(f"{EVENTS}/grantkeeper0001", headers=bearer(token)).json()["summary"] == "Design review"
    assert len(google.events()) == 1


def test_calendar_refuses_bad_ids_and_empty_time_ranges(google_http, google):
    token = google.issue_grant().access_token
    bad_id = google_http.post(EVENTS, json=event("Not-Base32hex!"), headers=bearer(token))
    assert bad_id.status_code == 400 and bad_id.json()["error"]["message"] == "Invalid resource id value."
    backwards = google_http.post(
        EVENTS, json=event(start="2026-05-04T12:00:00Z", end="2026-05-04T11:00:00Z"), headers=bearer(token)
    )
    assert backwards.status_code == 400 and backwards.json()["error"]["errors"][0]["reason"] == "timeRangeEmpty"
    no_end = google_http.post(EVENTS, json={"summary": "x", "start": {"dateTime": "2026-05-04T10:00:00Z"}}, headers=bearer(token))
    assert no_end.status_code == 400 and no_end.json()["error"]["message"] == "Missing end time."
    assert google.events() == []


def test_listing_events_filters_by_window_and_orders_by_start(google_http, google):
    token = google.issue_grant().access_token
    for i, hour in enumerate((15, 9, 12)):
        google_http.post(
            EVENTS,
            json=event(
                f"evt{i:05d}", start=f"2026-05-04T{hour:02d}:00:00Z", end=f"2026-05-04T{hour:02d}:30:00Z", summary=f"at {hour}"
            ),
            headers=bearer(token),
        ).raise_for_status()
    window = {
        "timeMin": "2026-05-04T10:00:00Z",
        "timeMax": "2026-05-05T00:00:00Z",
        "singleEvents": "true",
        "orderBy": "startTime",
    }
    listed = google_http.get(EVENTS, params=window, headers=bearer(token)).json()
    assert [e["summary"] for e in listed["items"]] == ["at 12", "at 15"]
    unordered = google_http.get(EVENTS, params={**window, "singleEvents": "false"}, headers=bearer(token))
    assert unordered.status_code == 400
    other = google_http.get("/calendar/v3/calendars/someone@example.com/events", headers=bearer(token))
    assert other.status_code == 404


def test_control_api_seeds_mail_and_switches_publishing_status(google_http, google):
    seeded = google_http.post("/_sim/messages", json={"from": "dan@example.com", "subject": "Seeded", "body": "hi"})
    assert seeded.status_code == 201
    assert google_http.get("/_sim/messages").json()["messages"][0]["payload"]["headers"][2]["value"] == "Seeded"
    google_http.post("/_sim/faults", json={"fault": "publishing_status", "status": "testing"}).raise_for_status()
    assert google.issue_grant().refresh_token_expires_in == 7 * 24 * 3600
    assert google_http.post("/_sim/faults", json={"fault": "publishing_status", "status": "beta"}).status_code == 400
    stats = google_http.get("/_sim/stats").json()
    assert stats["publishing_status"] == "testing" and stats["sent_messages"] == 0
    assert google_http.get("/_sim/events").json() == {"events": []}
