"""The Slack simulator over real loopback HTTP: rotation, reuse detection, auth errors, faults and the Web API."""

from __future__ import annotations

import asyncio
import time

import httpx2
from sim_helpers import bearer, slack_history, slack_post, slack_refresh

from simulators import SlackSimulator


def test_refresh_rotates_tokens_and_spent_refresh_token_answers_invalid_refresh_token_at_200(slack_http, slack):
    first = slack.issue_grant()

    rotated = slack_refresh(slack_http, first.refresh_token)
    body = rotated.json()
    assert rotated.status_code == 200 and body["ok"] is True
    assert body["access_token"].startswith("xoxe.xoxb-1-") and body["refresh_token"].startswith("xoxe-1-")
    assert body["refresh_token"] != first.refresh_token and body["access_token"] != first.access_token
    assert body["token_type"] == "bot" and body["expires_in"] == 43200
    assert body["team"] == {"id": "T0SIMTEAM", "name": "Simulated Workspace"}
    assert body["authed_user"] == {"id": "U0SIMUSER"}
    assert body["enterprise"] is None and body["is_enterprise_install"] is False

    slack.set_reuse_detection(False)
    again = slack_refresh(slack_http, first.refresh_token)
    assert again.status_code == 200
    assert again.json() == {"ok": False, "error": "invalid_refresh_token"}


def test_slack_rotation_leaves_old_access_token_valid_until_expiry(slack_http, slack):
    first = slack.issue_grant()
    new_access = slack_refresh(slack_http, first.refresh_token).json()["access_token"]

    assert slack_http.post("/api/auth.test", headers=bearer(first.access_token)).json()["ok"] is True
    assert slack_http.post("/api/auth.test", headers=bearer(new_access)).json()["ok"] is True


def test_rotation_can_be_configured_to_kill_the_old_access_token(slack_server):
    simulator = SlackSimulator(rotation_kills_access_token=True)
    slack_server.app = simulator
    first = simulator.issue_grant()
    with httpx2.Client(base_url=slack_server.url) as client:
        assert slack_refresh(client, first.refresh_token).json()["ok"] is True
        assert client.post("/api/auth.test", headers=bearer(first.access_token)).json()["error"] == "token_revoked"


def test_reusing_a_spent_refresh_token_revokes_the_whole_family_and_is_counted(slack_http, slack):
    first = slack.issue_grant()
    second = slack_refresh(slack_http, first.refresh_token).json()

    assert slack_refresh(slack_http, first.refresh_token).json()["error"] == "invalid_refresh_token"

    assert slack_refresh(slack_http, second["refresh_token"]).json()["error"] == "invalid_refresh_token"
    auth = slack_http.post("/api/auth.test", headers=bearer(second["access_token"])).json()
    assert auth == {"ok": False, "error": "token_revoked"}
    stats = slack.stats()
    assert stats["reuse_detections"] == 1
    assert stats["refreshes_ok"] == 1 and stats["refresh_failures"] == 2
    assert stats["token_requests"] == 3


def test_reuse_detection_switched_off_keeps_the_family_alive(slack_http, slack):
    slack_http.post("/_sim/faults", json={"fault": "reuse_detection", "enabled": False}).raise_for_status()
    first = slack.issue_grant()
    second = slack_refresh(slack_http, first.refresh_token).json()

    assert slack_refresh(slack_http, first.refresh_token).json()["error"] == "invalid_refresh_token"
    assert slack_refresh(slack_http, second["refresh_token"]).json()["ok"] is True
    assert slack.counters.reuse_detections == 0


def test_expired_access_token_answers_token_expired_at_200_and_refresh_recovers(slack_http, slack):
    grant = slack.issue_grant()
    slack_http.post("/_sim/faults", json={"fault": "expire_access_tokens"}).raise_for_status()

    response = slack_http.get("/api/conversations.history", params={"channel": "C0GENERAL"}, headers=bearer(grant.access_token))
    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": "token_expired", "response_metadata": {}}

    fresh = slack_refresh(slack_http, grant.refresh_token).json()["access_token"]
    assert slack_http.post("/api/auth.test", headers=bearer(fresh)).json()["ok"] is True


def test_access_token_expires_after_its_ttl_on_the_simulated_clock(slack_http, slack):
    grant = slack_http.post("/_sim/grants", json={"access_ttl": 60}).json()
    assert grant["expires_in"] == 60
    assert slack_http.post("/api/auth.test", headers=bearer(grant["access_token"])).json()["ok"] is True

    slack_http.post("/_sim/faults", json={"fault": "advance_clock", "seconds": 61}).raise_for_status()
    assert slack_http.post("/api/auth.test", headers=bearer(grant["access_token"])).json()["error"] == "token_expired"


def test_revoked_grant_answers_token_revoked(slack_http, slack):
    grant = slack.issue_grant()
    other = slack.issue_grant({"user_id": "U0SIMOTHER"})
    slack_http.post("/_sim/faults", json={"fault": "revoke", "refresh_token": grant.refresh_token}).raise_for_status()

    assert slack_http.post("/api/auth.test", headers=bearer(grant.access_token)).json()["error"] == "token_revoked"
    assert slack_refresh(slack_http, grant.refresh_token).json()["error"] == "invalid_refresh_token"
    assert slack_http.post("/api/auth.test", headers=bearer(other.access_token)).json()["ok"] is True


def test_deactivated_account_answers_account_inactive(slack_http, slack):
    grant = slack.issue_grant()
    slack_http.post("/_sim/faults", json={"fault": "deactivate", "access_token": grant.access_token}).raise_for_status()

    response = slack_http.post(
        "/api/chat.postMessage", json={"channel": "C0GENERAL", "text": "hi"}, headers=bearer(grant.access_token)
    )
    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": "account_inactive"}


def test_missing_token_is_not_authed_and_unknown_token_is_invalid_auth(slack_http, slack):
    assert slack_http.post("/api/auth.test").json() == {"ok": False, "error": "not_authed"}
    unknown = slack_http.post("/api/auth.test", headers=bearer("xoxe.xoxb-1-nope"))
    assert unknown.status_code == 200 and unknown.json() == {"ok": False, "error": "invalid_auth"}


def test_token_may_also_be_sent_as_a_form_argument(slack_http, slack):
    grant = slack.issue_grant()
    assert slack_http.post("/api/auth.test", data={"token": grant.access_token}).json()["ok"] is True


def test_rate_limit_fault_answers_429_with_retry_after_then_recovers(slack_http, slack):
    grant = slack.issue_grant()
    slack_http.post("/_sim/faults", json={"fault": "rate_limit", "count": 1, "retry_after": 3}).raise_for_status()

    limited = slack_http.post("/api/auth.test", headers=bearer(grant.access_token))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert slack_http.post("/api/auth.test", headers=bearer(grant.access_token)).status_code == 200
    assert slack.counters.rate_limited == 1


def test_fail_fault_answers_5xx_for_exactly_the_next_n_requests(slack_http, slack):
    grant = slack.issue_grant()
    slack.fail(count=2, status=503)

    statuses = [slack_http.post("/api/auth.test", headers=bearer(grant.access_token)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert slack.counters.server_errors == 2


def test_latency_fault_delays_api_calls_without_blocking_the_server(slack_server, slack):
    grant = slack.issue_grant()
    slack.latency(0.3)

    async def race() -> tuple[float, float]:
        async with httpx2.AsyncClient(base_url=slack_server.url) as client:
            started = time.monotonic()

            async def timed(coro):
                await coro
                return time.monotonic() - started

            return await asyncio.gather(
                timed(client.post("/api/auth.test", headers=bearer(grant.access_token))),
                timed(client.get("/_sim/stats")),
            )

    slow, fast = asyncio.run(race())
    assert slow >= 0.3
    assert fast < 0.3


def test_token_endpoint_fault_returns_5xx_without_spending_the_refresh_token(slack_http, slack):
    grant = slack.issue_grant()
    slack_http.post("/_sim/faults", json={"fault": "token_endpoint_fail", "count": 1, "status": 502}).raise_for_status()

    assert slack_refresh(slack_http, grant.refresh_token).status_code == 502
    assert slack_refresh(slack_http, grant.refresh_token).json()["ok"] is True
    assert slack.counters.token_requests == 2


def test_lost_token_response_makes_a_naive_retry_trip_reuse_detection(slack_http, slack):
    grant = slack.issue_grant()
    slack.token_endpoint_fail(count=1, status=504, after_processing=True)

    assert slack_refresh(slack_http, grant.refresh_token).status_code == 504
    assert slack_refresh(slack_http, grant.refresh_token).json()["error"] == "invalid_refresh_token"
    assert slack.counters.reuse_detections == 1


def test_token_endpoint_accepts_json_body_with_http_basic_client_credentials(slack_http, slack):
    grant = slack.issue_grant()
    response = slack_http.post(
        "/api/oauth.v2.access",
        json={"grant_type": "refresh_token", "refresh_token": grant.refresh_token},
        auth=("sim-slack-client", "sim-slack-secret"),
    )
    assert response.json()["ok"] is True


def test_token_endpoint_rejects_unknown_client_bad_secret_and_bad_grant_type(slack_http, slack):
    def post(**fields):
        return slack_http.post("/api/oauth.v2.access", data=fields).json()

    assert post(client_id="other", client_secret="sim-slack-secret")["error"] == "invalid_client_id"
    assert post(client_id="sim-slack-client", client_secret="wrong")["error"] == "bad_client_secret"
    good = {"client_id": "sim-slack-client", "client_secret": "sim-slack-secret"}
    assert post(**good, grant_type="password")["error"] == "invalid_grant_type"
    assert post(**good, grant_type="authorization_code", code="nope")["error"] == "invalid_code"


def test_history_pages_newest_first_with_real_cursors(slack_http, slack):
    token = slack.issue_grant().access_token
    texts, cursor, pages = [], None, 0
    while True:
        params = {"channel": "C0GENERAL", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = slack_http.get("/api/conversations.history", params=params, headers=bearer(token)).json()
        pages += 1
        texts += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break
    assert pages == 2
    assert texts == [m["text"] for m in reversed(slack.messages("C0GENERAL"))]


def test_history_honours_oldest_latest_and_inclusive(slack_http, slack):
    token = slack.issue_grant().access_token
    params = {"channel": "C0GENERAL", "oldest": "1512085961.000310", "latest": "1512086102.000519"}
    exclusive = slack_history(slack_http, token, **params)
    inclusive = slack_history(slack_http, token, **params, inclusive="true")
    assert [m["ts"] for m in exclusive["messages"]] == ["1512086011.000402"]
    assert [m["ts"] for m in inclusive["messages"]] == ["1512086102.000519", "1512086011.000402", "1512085961.000310"]


def test_history_argument_errors_match_slack(slack_http, slack):
    token = slack.issue_grant().access_token
    missing = slack_http.get("/api/conversations.history", headers=bearer(token)).json()
    assert missing["error"] == "invalid_arguments"
    unknown = slack_http.get("/api/conversations.history", params={"channel": "C0NOPE"}, headers=bearer(token)).json()
    assert unknown == {"ok": False, "error": "channel_not_found"}
    bad_cursor = slack_http.get(
        "/api/conversations.history", params={"channel": "C0GENERAL", "cursor": "!!"}, headers=bearer(token)
    ).json()
    assert bad_cursor["error"] == "invalid_cursor"


def test_post_message_appends_to_the_channel_and_a_retry_posts_twice(slack_http, slack):
    token = slack.issue_grant().access_token
    first = slack_post(slack_http, token, channel="C0RANDOM", text="deploy done")
    as_form = {"channel": "#random", "text": "deploy done"}
    retry = slack_http.post("/api/chat.postMessage", data=as_form, headers=bearer(token)).json()

    assert first["ok"] and retry["ok"] and first["channel"] == retry["channel"] == "C0RANDOM"
    assert first["ts"] != retry["ts"] and first["message"]["text"] == "deploy done"
    newest = slack_history(slack_http, token, channel="C0RANDOM", limit=2)
    assert [m["ts"] for m in newest["messages"]] == [retry["ts"], first["ts"]]


def test_thread_replies_stay_out_of_channel_history(slack_http, slack):
    token = slack.issue_grant().access_token
    parent = "1512085950.000216"
    reply = slack_post(slack_http, token, channel="C0GENERAL", text="on it", thread_ts=parent)
    assert reply["message"]["thread_ts"] == parent
    history = slack_history(slack_http, token, channel="C0GENERAL")
    assert reply["ts"] not in [m["ts"] for m in history["messages"]]
    assert next(m for m in history["messages"] if m["ts"] == parent)["reply_count"] == 1


def test_post_message_errors_no_text_channel_not_found_and_missing_scope(slack_http, slack):
    token = slack.issue_grant().access_token
    assert slack_post(slack_http, token, channel="C0GENERAL")["error"] == "no_text"
    assert slack_post(slack_http, token, channel="C0NOPE", text="x")["error"] == "channel_not_found"
    reader = slack.issue_grant(scopes=["channels:history"]).access_token
    assert slack_post(slack_http, reader, channel="C0GENERAL", text="x") == {
        "ok": False,
        "error": "missing_scope",
        "needed": "chat:write",
        "provided": "channels:history",
    }


def test_auth_test_describes_the_bot_in_the_grants_workspace(slack_http, slack):
    token = slack.issue_grant({"team_id": "T0ACME", "team_name": "Acme"}).access_token
    response = slack_http.post("/api/auth.test", headers=bearer(token))
    body = response.json()
    assert body["ok"] is True and body["team_id"] == "T0ACME" and body["team"] == "Acme"
    assert body["user_id"] == "U0SIMBOT" and body["bot_id"] == "B0SIMBOT" and body["url"].startswith("https://")
    assert response.headers["x-oauth-scopes"] == "channels:history,channels:read,chat:write"
