"""The Slack simulator keeps message metadata (shown only with include_all_metadata), serves threads through
conversations.replies, and injects the faults the triage agent's timeline needs: a post whose answer is lost,
an outage, a flaky token endpoint."""

from __future__ import annotations

import json

from sim_helpers import bearer, slack_refresh

MARK = {"event_type": "grantkeeper_post", "event_payload": {"idempotency_key": "reply-0123456789"}}


def _post(client, token, **payload):
    return client.post("/api/chat.postMessage", headers=bearer(token), json={"channel": "C0GENERAL", **payload})


def test_metadata_is_stored_and_shown_only_when_asked_for(slack_http, slack):
    token = slack.issue_grant().access_token
    posted = _post(slack_http, token, text="deploy done", metadata=MARK).json()
    assert posted["ok"] is True and posted["message"]["metadata"] == MARK

    plain = slack_http.get(
        "/api/conversations.history", headers=bearer(token), params={"channel": "C0GENERAL", "limit": 1}
    ).json()
    assert plain["messages"][0]["text"] == "deploy done" and "metadata" not in plain["messages"][0]
    full = slack_http.get(
        "/api/conversations.history",
        headers=bearer(token),
        params={"channel": "C0GENERAL", "limit": 1, "include_all_metadata": "true"},
    ).json()
    assert full["messages"][0]["metadata"] == MARK


def test_form_encoded_metadata_is_a_json_string(slack_http, slack):
    token = slack.issue_grant().access_token
    answer = slack_http.post(
        "/api/chat.postMessage", headers=bearer(token), data={"channel": "C0GENERAL", "text": "hi", "metadata": json.dumps(MARK)}
    ).json()
    assert answer["ok"] is True and answer["message"]["metadata"] == MARK


def test_hostile_metadata_is_refused_and_nothing_is_posted(slack_http, slack):
    token = slack.issue_grant().access_token
    before = len(slack.messages("C0GENERAL"))
    cases = {
        "invalid_metadata_format": ["not json {", [1, 2], {"event_type": "x", "event_payload": {}, "extra": 1}],
        "invalid_metadata_schema": [
            {"event_type": "", "event_payload": {}},
            {"event_type": "x", "event_payload": "s"},
            {"event_type": 7, "event_payload": {}},
        ],
        "metadata_too_large": [{"event_type": "x", "event_payload": {"k": "v" * 9000}}],
    }
    for error, values in cases.items():
        for value in values:
            raw = value if isinstance(value, str) else json.dumps(value)
            answer = slack_http.post(
                "/api/chat.postMessage", headers=bearer(token), data={"channel": "C0GENERAL", "text": "hi", "metadata": raw}
            ).json()
            assert answer == {"ok": False, "error": error}, (value, answer)
    assert len(slack.messages("C0GENERAL")) == before


def test_replies_return_the_thread_oldest_first_with_metadata_on_request(slack_http, slack):
    token = slack.issue_grant().access_token
    parent = slack.seed_message("C0GENERAL", "checkout is broken")
    _post(slack_http, token, text="looking", thread_ts=parent["ts"])
    _post(slack_http, token, text="filed", thread_ts=parent["ts"], metadata=MARK)
    _post(slack_http, token, text="unrelated top-level message")

    thread = slack_http.get(
        "/api/conversations.replies",
        headers=bearer(token),
        params={"channel": "C0GENERAL", "ts": parent["ts"], "include_all_metadata": "1"},
    ).json()
    assert [m["text"] for m in thread["messages"]] == ["checkout is broken", "looking", "filed"]
    assert thread["messages"][2]["metadata"] == MARK and "metadata" not in thread["messages"][1]

    page = slack_http.get(
        "/api/conversations.replies", headers=bearer(token), params={"channel": "C0GENERAL", "ts": parent["ts"], "limit": 2}
    ).json()
    assert [m["text"] for m in page["messages"]] == ["checkout is broken", "looking"] and page["has_more"] is True
    rest = slack_http.get(
        "/api/conversations.replies",
        headers=bearer(token),
        params={"channel": "C0GENERAL", "ts": parent["ts"], "cursor": page["response_metadata"]["next_cursor"]},
    ).json()
    assert [m["text"] for m in rest["messages"]] == ["filed"] and rest["has_more"] is False


def test_replies_refuse_unknown_threads_channels_and_cursors(slack_http, slack):
    token = slack.issue_grant().access_token
    ask = lambda **params: slack_http.get("/api/conversations.replies", headers=bearer(token), params=params).json()  # noqa: E731
    assert ask(channel="C0GENERAL", ts="1.000001")["error"] == "thread_not_found"
    assert ask(channel="C0NOPE", ts="1.000001")["error"] == "channel_not_found"
    assert ask(channel="C0GENERAL")["error"] == "invalid_arguments"
    assert ask(channel="C0GENERAL", ts="1512085950.000216", cursor="%%%")["error"] == "invalid_cursor"
    assert ask(channel="C0GENERAL", ts="1512085950.000216", limit="lots")["error"] == "invalid_arguments"


def test_a_lost_post_answer_is_a_5xx_after_the_message_was_stored(slack_http, slack):
    token = slack.issue_grant().access_token
    slack.fail(count=1, status=502, after_processing=True, endpoint="chat.postMessage")
    # Other endpoints are not hit by a fault aimed at posts.
    assert slack_http.post("/api/auth.test", headers=bearer(token)).json()["ok"] is True
    lost = _post(slack_http, token, text="did it land?")
    assert lost.status_code == 502
    assert [m["text"] for m in slack.messages("C0GENERAL")].count("did it land?") == 1


def test_an_outage_fails_api_and_token_requests_until_it_ends(slack_http, slack):
    grant = slack.issue_grant()
    slack.outage(60)
    assert slack_http.post("/api/auth.test", headers=bearer(grant.access_token)).status_code == 503
    assert slack_refresh(slack_http, grant.refresh_token).status_code == 503
    slack.outage(0)
    assert slack_http.post("/api/auth.test", headers=bearer(grant.access_token)).json()["ok"] is True
    assert slack_refresh(slack_http, grant.refresh_token).json()["ok"] is True  # the refused refresh spent nothing


def test_a_flaky_token_endpoint_fails_about_the_given_share_and_nothing_else(slack_http, slack):
    slack.token_endpoint_flaky(rate=0.3, seconds=60, seed=7)
    refresh_token = slack.issue_grant().refresh_token
    failures = 0
    for _ in range(100):
        answer = slack_refresh(slack_http, refresh_token)
        if answer.status_code == 503:
            failures += 1
        else:
            refresh_token = answer.json()["refresh_token"]
    assert 15 <= failures <= 45
    assert slack.counters.reuse_detections == 0


def test_faults_through_the_control_api(slack_http, slack):
    for spec in (
        {"fault": "outage", "seconds": 0},
        {"fault": "token_endpoint_flaky", "rate": 0.3, "seconds": 1},
        {"fault": "fail", "count": 1, "after_processing": True, "endpoint": "chat.postMessage"},
    ):
        assert slack_http.post("/_sim/faults", json=spec).status_code == 200, spec
    refused = slack_http.post("/_sim/faults", json={"fault": "token_endpoint_flaky", "rate": 3, "seconds": 1})
    assert refused.status_code == 400
