"""The /_sim/ control API that drives a simulator running in another process."""

from __future__ import annotations

from sim_helpers import bearer, slack_refresh


def test_posting_a_grant_mints_tokens_for_a_chosen_identity(slack_http, slack):
    response = slack_http.post(
        "/_sim/grants", json={"identity": {"user_id": "U0ALICE"}, "scopes": ["chat:write"], "access_ttl": 120}
    )
    assert response.status_code == 201
    grant = response.json()
    assert grant["identity"] == {"team_id": "T0SIMTEAM", "team_name": "Simulated Workspace", "user_id": "U0ALICE"}
    assert grant["scopes"] == ["chat:write"] and grant["expires_in"] == 120
    assert grant["access_token"].startswith("xoxe.xoxb-1-") and grant["refresh_token"].startswith("xoxe-1-")


def test_grant_listing_shows_state_without_full_tokens(slack_http, slack):
    grant = slack_http.post("/_sim/grants", json={}).json()
    slack_http.post("/_sim/faults", json={"fault": "revoke", "grant_id": grant["grant_id"]}).raise_for_status()

    listing = slack_http.get("/_sim/grants").json()["grants"]
    assert [(g["grant_id"], g["state"]) for g in listing] == [(grant["grant_id"], "revoked")]
    assert grant["refresh_token"] not in slack_http.get("/_sim/grants").text


def test_stats_count_requests_per_endpoint_and_reset_clears_them(slack_http, slack):
    grant = slack.issue_grant()
    slack_http.post("/api/auth.test", headers=bearer(grant.access_token))
    slack_http.get("/api/conversations.history", params={"channel": "C0GENERAL"}, headers=bearer(grant.access_token))
    slack_refresh(slack_http, grant.refresh_token)

    stats = slack_http.get("/_sim/stats").json()
    assert stats["api_requests"] == 2 and stats["token_requests"] == 1 and stats["refreshes_ok"] == 1
    assert stats["endpoints"] == {"auth.test": 1, "conversations.history": 1, "token": 1}

    after = slack_http.post("/_sim/reset").json()
    assert after["api_requests"] == 0 and after["endpoints"] == {}


def test_reset_with_faults_also_clears_pending_faults(slack_http, slack):
    token = slack.issue_grant().access_token
    slack_http.post("/_sim/faults", json={"fault": "fail", "count": 5}).raise_for_status()
    assert slack_http.get("/_sim/stats").json()["faults"]["failures_pending"] == 5

    slack_http.post("/_sim/reset", json={"faults": True}).raise_for_status()
    assert slack_http.post("/api/auth.test", headers=bearer(token)).status_code == 200


def test_revoke_without_a_target_revokes_every_grant(slack_http, slack):
    tokens = [slack.issue_grant().access_token for _ in range(3)]
    assert slack_http.post("/_sim/faults", json={"fault": "revoke"}).json() == {"fault": "revoke", "revoked": 3}
    assert {slack_http.post("/api/auth.test", headers=bearer(t)).json()["error"] for t in tokens} == {"token_revoked"}


def test_access_ttl_fault_changes_the_lifetime_of_new_tokens(slack_http, slack):
    slack_http.post("/_sim/faults", json={"fault": "access_ttl", "seconds": 5}).raise_for_status()
    grant = slack.issue_grant()
    assert slack_refresh(slack_http, grant.refresh_token).json()["expires_in"] == 5
    assert slack_http.get("/_sim/stats").json()["access_ttl"] == 5


def test_tokens_ended_early_are_announced_long_lived_but_answer_expired_from_their_first_use(slack_http, slack):
    grant = slack.issue_grant()
    ended = {"fault": "end_tokens_early", "count": 1, "announced_ttl": 86400}
    slack_http.post("/_sim/faults", json=ended).raise_for_status()

    first = slack_refresh(slack_http, grant.refresh_token).json()
    assert first["expires_in"] == 86400
    assert slack_http.post("/api/auth.test", headers=bearer(first["access_token"])).json()["error"] == "token_expired"

    second = slack_refresh(slack_http, first["refresh_token"]).json()
    assert second["expires_in"] == slack.grants.access_ttl
    assert slack_http.post("/api/auth.test", headers=bearer(second["access_token"])).json()["ok"] is True


def test_clearing_faults_forgets_tokens_still_to_be_ended_early(slack_http, slack):
    grant = slack.issue_grant()
    slack_http.post("/_sim/faults", json={"fault": "end_tokens_early", "count": 3}).raise_for_status()
    slack_http.post("/_sim/faults", json={"fault": "clear"}).raise_for_status()

    fresh = slack_refresh(slack_http, grant.refresh_token).json()
    assert slack_http.post("/api/auth.test", headers=bearer(fresh["access_token"])).json()["ok"] is True


def test_bad_fault_requests_are_refused(slack_http, slack):
    unknown = slack_http.post("/_sim/faults", json={"fault": "meteor"})
    assert unknown.status_code == 400 and "rate_limit" in unknown.json()["error"]
    assert slack_http.post("/_sim/faults", json={"fault": "rate_limit", "count": "many"}).status_code == 400
    pending = slack_http.get("/_sim/stats").json()["faults"]
    for absurd in (10**12, -1, True, 2.5):  # a count is kept one pending fault per request: bounded, whole
        refused = slack_http.post("/_sim/faults", json={"fault": "fail", "count": absurd})
        assert refused.status_code == 400 and "from 0 to 1000000" in refused.json()["error"]
    assert slack_http.get("/_sim/stats").json()["faults"] == pending  # nothing was queued
    assert slack_http.post("/_sim/faults", json={"fault": "latency", "bogus": 1}).status_code == 400
    assert slack_http.post("/_sim/faults", content=b"not json").status_code == 400
    revoke_unknown = slack_http.post("/_sim/faults", json={"fault": "revoke", "access_token": "xoxe.xoxb-1-nope"})
    assert revoke_unknown.status_code == 404


def test_token_endpoint_latency_and_clear(slack_http, slack):
    slack_http.post("/_sim/faults", json={"fault": "token_endpoint_latency", "seconds": 0.05}).raise_for_status()
    assert slack_http.get("/_sim/stats").json()["faults"]["token_endpoint_latency"] == 0.05
    slack_http.post("/_sim/faults", json={"fault": "clear"}).raise_for_status()
    assert slack_http.get("/_sim/stats").json()["faults"]["token_endpoint_latency"] == 0.0


def test_slack_messages_can_be_seeded_and_read_back(slack_http, slack):
    seeded = slack_http.post("/_sim/messages", json={"channel": "C0NEW", "text": "seeded", "user": "U0BOB"})
    assert seeded.status_code == 201
    token = slack.issue_grant().access_token
    history = slack_http.get("/api/conversations.history", params={"channel": "C0NEW"}, headers=bearer(token)).json()
    assert [m["text"] for m in history["messages"]] == ["seeded"]
    assert slack_http.get("/_sim/messages", params={"channel": "C0NEW"}).json()["messages"][0]["user"] == "U0BOB"
    assert set(slack_http.get("/_sim/messages").json()["channels"]) == {"C0GENERAL", "C0RANDOM", "C0NEW"}


def test_github_issues_can_be_seeded_and_listed(github_http, github):
    seeded = github_http.post("/_sim/issues", json={"repo": "acme/app", "title": "seeded", "state": "closed"})
    assert seeded.status_code == 201 and seeded.json()["state"] == "closed"
    listed = github_http.get("/_sim/issues", params={"repo": "acme/app"}).json()["issues"]
    assert [issue["title"] for issue in listed] == ["seeded"]


def test_github_stats_and_grants_work_like_slack(github_http, github):
    grant = github_http.post("/_sim/grants", json={"identity": {"login": "hubot", "id": 42}}).json()
    assert grant["identity"] == {"login": "hubot", "id": 42} and grant["refresh_token_expires_in"] == 15811200
    github_http.get("/user", headers=bearer(grant["access_token"]))
    assert github_http.get("/_sim/stats").json()["endpoints"] == {"GET /user": 1}


def test_hostile_answers_are_set_over_http_and_each_misbehaves_as_named(slack_http, slack):
    import gzip
    import zlib

    import httpx2

    for fault in (
        {"fault": "garble"},
        {"fault": "gzip_bomb", "inflated_bytes": 4 * 1024 * 1024},
        {"fault": "huge_answer", "size": 1024 * 1024},
    ):
        slack_http.post("/_sim/faults", json=fault).raise_for_status()
    assert slack_http.get("/_sim/stats").json()["faults"]["hostile_answers_pending"] == 3

    garbled = slack_http.get("/api/conversations.history")
    assert garbled.status_code == 200 and garbled.content.endswith(b'"na')  # JSON cut off mid-way
    with slack_http.stream("GET", "/api/conversations.history") as bomb:
        wire = b"".join(bomb.iter_raw())
    assert bomb.headers["content-encoding"] == "gzip" and len(wire) < 64 * 1024
    assert len(zlib.decompress(wire, 31)) == 4 * 1024 * 1024 == len(gzip.decompress(wire))
    with slack_http.stream("GET", "/api/conversations.history") as endless:
        assert "content-length" not in endless.headers and len(endless.read()) > 1024 * 1024

    slack_http.post("/_sim/faults", json={"fault": "hang"}).raise_for_status()
    try:
        slack_http.get("/api/conversations.history", timeout=0.2)
        raise AssertionError("a hanging answer answered")
    except httpx2.ReadTimeout:
        pass
    assert slack.counters.wait_for("answers_abandoned", 1)  # the simulator saw the client leave
    assert slack.counters.hostile_answers == 4


def test_an_unknown_hostile_answer_is_refused(slack_http, slack):
    response = slack_http.post("/_sim/faults", json={"fault": "trickle", "count": "many"})
    assert response.status_code == 400


def test_the_printed_settings_are_the_ones_the_test_suite_runs_grantkeeper_with(
    slack_sim, github_sim, slack_server, github_server
):
    from simulators.__main__ import settings_for
    from simulators.environment import simulator_environment

    working = simulator_environment(slack_server.url, github_server.url)
    for name, sim, server in (("slack", slack_sim, slack_server), ("github", github_sim, github_server)):
        printed = dict(line.split("=", 1) for line in settings_for(name, sim, server.url))
        assert printed == {key: value for key, value in working.items() if key.startswith(f"GRANTKEEPER_{name.upper()}_")}
