"""The GitHub simulator over real loopback HTTP: user-token rotation, 401s, rate limits, issues and search."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx2
from sim_helpers import bearer, github_refresh, github_search

from simulators import GitHubSimulator


def test_refresh_rotates_and_kills_both_the_old_refresh_and_the_old_access_token(github_http, github):
    first = github.issue_grant()

    rotated = github_refresh(github_http, first.refresh_token)
    body = rotated.json()
    assert rotated.status_code == 200
    assert body["access_token"].startswith("ghu_") and body["refresh_token"].startswith("ghr_")
    assert body["expires_in"] == 28800 and body["refresh_token_expires_in"] == 15811200
    assert body["scope"] == "" and body["token_type"] == "bearer"

    old_access = github_http.get("/user", headers=bearer(first.access_token))
    assert old_access.status_code == 401
    assert old_access.json() == {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
    assert github_http.get("/user", headers=bearer(body["access_token"])).status_code == 200

    github.set_reuse_detection(False)
    spent = github_refresh(github_http, first.refresh_token)
    assert spent.status_code == 200
    assert spent.json() == {
        "error": "bad_refresh_token",
        "error_description": "The refresh token passed is incorrect or expired.",
        "error_uri": "https://docs.github.com/apps/managing-oauth-apps/"
        "troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
    }


def test_reusing_a_spent_refresh_token_revokes_the_family_and_is_counted(github_http, github):
    first = github.issue_grant()
    second = github_refresh(github_http, first.refresh_token).json()

    assert github_refresh(github_http, first.refresh_token).json()["error"] == "bad_refresh_token"

    assert github_refresh(github_http, second["refresh_token"]).json()["error"] == "bad_refresh_token"
    assert github_http.get("/user", headers=bearer(second["access_token"])).status_code == 401
    assert github_http.get("/_sim/stats").json()["reuse_detections"] == 1


def test_token_endpoint_replies_form_encoded_without_accept_json(github_http, github):
    grant = github.issue_grant()
    fields = {"client_id": "sim-github-client", "client_secret": "sim-github-secret", "grant_type": "refresh_token"}

    ok = github_http.post("/login/oauth/access_token", data={**fields, "refresh_token": grant.refresh_token})
    assert ok.headers["content-type"].startswith("application/x-www-form-urlencoded")
    parsed = parse_qs(ok.text, keep_blank_values=True)
    assert parsed["access_token"][0].startswith("ghu_")
    assert parsed["token_type"] == ["bearer"] and parsed["scope"] == [""]

    failed = github_http.post("/login/oauth/access_token", params={**fields, "refresh_token": "ghr_unknown"})
    assert failed.status_code == 200
    assert parse_qs(failed.text)["error"] == ["bad_refresh_token"]


def test_token_endpoint_rejects_wrong_client_credentials_at_200(github_http, github):
    grant = github.issue_grant()
    fields = {"client_id": "sim-github-client", "client_secret": "nope", "grant_type": "refresh_token"}
    response = github_http.post(
        "/login/oauth/access_token",
        json={**fields, "refresh_token": grant.refresh_token},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200 and response.json()["error"] == "incorrect_client_credentials"
    assert github_refresh(github_http, grant.refresh_token).json()["access_token"].startswith("ghu_")


def test_refresh_token_dies_after_six_months(github_http, github):
    grant = github.issue_grant()
    github.advance_clock(15811200 + 1)
    assert github_refresh(github_http, grant.refresh_token).json()["error"] == "bad_refresh_token"


def test_expired_revoked_and_deactivated_tokens_all_get_401_bad_credentials(github_http, github):
    expired, revoked, inactive = github.issue_grant(), github.issue_grant(), github.issue_grant()
    expire = {"fault": "expire_access_tokens", "grant_id": expired.grant_id}
    github_http.post("/_sim/faults", json=expire).raise_for_status()
    github.revoke(token=revoked.access_token)
    github.deactivate(token=inactive.refresh_token)

    for grant in (expired, revoked, inactive):
        response = github_http.get("/user", headers={"Authorization": f"token {grant.access_token}"})
        assert response.status_code == 401 and response.json()["message"] == "Bad credentials"
    assert github_http.get("/user").json()["message"] == "Requires authentication"


def test_every_api_response_carries_rate_limit_headers(github_http, github):
    token = github.issue_grant().access_token
    for response in (github_http.get("/user", headers=bearer(token)), github_http.get("/user")):
        for suffix in ("limit", "remaining", "used", "reset", "resource"):
            assert f"x-ratelimit-{suffix}" in response.headers
    second = github_http.get("/user", headers=bearer(token))
    assert second.headers["x-ratelimit-limit"] == "5000" and second.headers["x-ratelimit-used"] == "2"
    search = github_search(github_http, token, "is:issue")
    assert search.headers["x-ratelimit-resource"] == "search" and search.headers["x-ratelimit-limit"] == "30"


def test_rate_limit_fault_answers_403_with_remaining_zero(github_http, github):
    token = github.issue_grant().access_token
    github.rate_limit(count=1, retry_after=None)

    limited = github_http.get("/user", headers=bearer(token))
    assert limited.status_code == 403
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.json()["message"] == "API rate limit exceeded for user ID 1."
    assert "retry-after" not in limited.headers
    assert github_http.get("/user", headers=bearer(token)).status_code == 200


def test_rate_limit_fault_with_retry_after_looks_like_a_secondary_limit_and_can_be_429(github_http, github):
    token = github.issue_grant().access_token
    github_http.post("/_sim/faults", json={"fault": "rate_limit", "retry_after": 7, "status": 429}).raise_for_status()

    limited = github_http.post("/repos/o/r/issues", json={"title": "x"}, headers=bearer(token))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert "secondary rate limit" in limited.json()["message"]
    assert github.issues("o/r") == []


def test_spent_primary_budget_answers_403_until_the_window_resets(github_server):
    simulator = GitHubSimulator(core_limit=2)
    github_server.app = simulator
    token = simulator.issue_grant().access_token
    with httpx2.Client(base_url=github_server.url) as client:
        statuses = [client.get("/user", headers=bearer(token)).status_code for _ in range(3)]
        assert statuses == [200, 200, 403]
        simulator.advance_clock(3601)
        assert client.get("/user", headers=bearer(token)).status_code == 200


def test_create_issue_returns_201_with_github_shaped_issue(github_http, github):
    token = github.issue_grant({"login": "hubot", "id": 42}).access_token
    response = github_http.post(
        "/repos/acme/widgets/issues",
        json={"title": "Crash on save", "body": "steps…", "labels": ["bug"]},
        headers=bearer(token),
    )
    assert response.status_code == 201
    issue = response.json()
    assert issue["number"] == 1 and issue["state"] == "open" and issue["title"] == "Crash on save"
    assert issue["user"]["login"] == "hubot" and issue["user"]["id"] == 42
    assert issue["html_url"] == "https://github.com/acme/widgets/issues/1"
    assert [label["name"] for label in issue["labels"]] == ["bug"]
    assert {"id", "node_id", "body", "created_at", "updated_at", "closed_at"} <= issue.keys()
    assert response.headers["location"].endswith("/repos/acme/widgets/issues/1")
    second = github_http.post("/repos/acme/widgets/issues", json={"title": "Again"}, headers=bearer(token)).json()
    assert second["number"] == 2
    assert github_http.get("/repos/acme/widgets/issues/2", headers=bearer(token)).json()["title"] == "Again"


def test_create_issue_errors_422_without_title_404_missing_repo_410_issues_disabled(github_http, github):
    token = github.issue_grant().access_token
    no_title = github_http.post("/repos/o/r/issues", json={"body": "x"}, headers=bearer(token))
    assert no_title.status_code == 422
    assert no_title.json()["message"] == "Validation Failed" and no_title.json()["errors"][0]["field"] == "title"

    github_http.post("/_sim/faults", json={"fault": "repo_missing", "repo": "o/gone"}).raise_for_status()
    missing = github_http.post("/repos/o/gone/issues", json={"title": "x"}, headers=bearer(token))
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"

    github.disable_issues("o/quiet")
    assert github_http.post("/repos/o/quiet/issues", json={"title": "x"}, headers=bearer(token)).status_code == 410


def test_known_repos_make_every_other_repo_404(github_server):
    simulator = GitHubSimulator(known_repos=["acme/widgets"])
    github_server.app = simulator
    token = simulator.issue_grant().access_token
    with httpx2.Client(base_url=github_server.url) as client:
        assert client.post("/repos/acme/widgets/issues", json={"title": "x"}, headers=bearer(token)).status_code == 201
        assert client.post("/repos/acme/other/issues", json={"title": "x"}, headers=bearer(token)).status_code == 404


def test_search_without_is_issue_or_is_pull_request_is_422(github_http, github):
    token = github.issue_grant().access_token
    response = github_search(github_http, token, "repo:o/r crash")
    assert response.status_code == 422
    assert "is:issue" in response.json()["errors"][0]["message"]
    assert github_search(github_http, token, "").status_code == 422


def test_search_filters_by_repo_state_body_phrase_and_words(github_http, github):
    token = github.issue_grant().access_token
    github.create_issue("acme/app", "Crash on save", "marker <!-- idem:abc-123 --> here")
    github.create_issue("acme/app", "Slow save", "nothing to see", state="closed")
    github.create_issue("acme/other", "Crash on load", "idem:abc-123")

    def search(q: str) -> list[str]:
        response = github_search(github_http, token, q)
        assert response.status_code == 200 and response.json()["incomplete_results"] is False
        return sorted(item["title"] for item in response.json()["items"])

    assert search('repo:acme/app is:issue in:body "idem:abc-123"') == ["Crash on save"]
    assert search("is:issue crash") == ["Crash on load", "Crash on save"]
    assert search("repo:acme/app is:issue is:closed") == ["Slow save"]
    assert search("repo:acme/app is:issue is:open save") == ["Crash on save"]
    assert search("is:pull-request crash") == []
    assert search('is:issue in:title "idem:abc-123"') == []


def test_search_pages_with_per_page_and_page(github_http, github):
    token = github.issue_grant().access_token
    for n in range(5):
        github.create_issue("acme/app", f"Issue {n}")
    first = github_search(github_http, token, "is:issue", per_page=2)
    last = github_search(github_http, token, "is:issue", per_page=2, page=3)
    assert first.json()["total_count"] == 5 and len(first.json()["items"]) == 2
    assert 'rel="next"' in first.headers["link"]
    assert len(last.json()["items"]) == 1 and 'rel="next"' not in last.headers["link"]


def test_search_lag_hides_fresh_issues_that_the_repo_listing_still_shows(github_http, github):
    token = github.issue_grant().access_token
    github_http.post("/_sim/faults", json={"fault": "search_lag", "seconds": 30}).raise_for_status()
    new_issue = {"title": "t", "body": "idem:xyz"}
    created = github_http.post("/repos/acme/app/issues", json=new_issue, headers=bearer(token)).json()

    assert github_search(github_http, token, 'is:issue "idem:xyz"').json()["total_count"] == 0
    listed = github_http.get(
        "/repos/acme/app/issues",
        params={"creator": "octocat", "since": created["created_at"], "state": "all"},
        headers=bearer(token),
    ).json()
    assert [issue["number"] for issue in listed] == [created["number"]]

    github.advance_clock(31)
    assert github_search(github_http, token, 'is:issue "idem:xyz"').json()["total_count"] == 1


def test_issue_listing_filters_by_state_and_creator(github_http, github):
    token = github.issue_grant().access_token
    github.create_issue("acme/app", "mine open")
    github.create_issue("acme/app", "mine closed", state="closed")
    github.create_issue("acme/app", "theirs", user={"login": "someone", "id": 9})

    def titles(**params):
        listed = github_http.get("/repos/acme/app/issues", params=params, headers=bearer(token)).json()
        return sorted(issue["title"] for issue in listed)

    assert titles() == ["mine open", "theirs"]
    assert titles(state="all", creator="octocat") == ["mine closed", "mine open"]
    assert titles(state="closed") == ["mine closed"]


def test_get_user_returns_the_grants_identity(github_http, github):
    token = github.issue_grant({"login": "hubot", "id": 42}).access_token
    user = github_http.get("/user", headers=bearer(token)).json()
    assert user["login"] == "hubot" and user["id"] == 42 and user["type"] == "User"


def test_token_endpoint_accepts_http_basic_unless_switched_off(github_server):
    for accept_basic_auth, expected in ((True, "access_token"), (False, "error")):
        simulator = GitHubSimulator(accept_basic_auth=accept_basic_auth)
        github_server.app = simulator
        grant = simulator.issue_grant()
        with httpx2.Client(base_url=github_server.url) as client:
            body = client.post(
                "/login/oauth/access_token",
                data={"grant_type": "refresh_token", "refresh_token": grant.refresh_token},
                auth=("sim-github-client", "sim-github-secret"),
                headers={"Accept": "application/json"},
            ).json()
        assert expected in body
