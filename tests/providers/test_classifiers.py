"""Provider classifiers on answers the simulators do not produce (gateway pages, header-only rate limits)."""

from __future__ import annotations

import time

import httpx2

from providers.base import Verdict
from providers.github import PROVIDER as GITHUB
from providers.slack import PROVIDER as SLACK


def test_github_primary_limit_without_retry_after_waits_until_the_reset():
    reset = int(time.time()) + 300
    response = httpx2.Response(
        403,
        json={"message": "API rate limit exceeded for user ID 1."},
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    verdict = GITHUB.classify_api_response(response)
    assert verdict.verdict is Verdict.RATE_LIMITED
    assert 295 <= verdict.retry_after <= 302


def test_github_secondary_limit_without_headers_waits_a_minute():
    response = httpx2.Response(403, json={"message": "You have exceeded a secondary rate limit. Please wait."})
    verdict = GITHUB.classify_api_response(response)
    assert (verdict.verdict, verdict.retry_after) == (Verdict.RATE_LIMITED, 60.0)


def test_github_403_without_rate_limit_signs_is_a_permission_problem():
    verdict = GITHUB.classify_api_response(httpx2.Response(403, json={"message": "Resource not accessible"}))
    assert verdict.verdict is Verdict.FORBIDDEN


def test_slack_answer_that_is_not_json_is_malformed_not_ok():
    verdict = SLACK.classify_api_response(httpx2.Response(200, text="<html>gateway</html>"))
    assert (verdict.verdict, verdict.reason) == (Verdict.UPSTREAM, "malformed_response")


def test_slack_unknown_error_code_is_an_upstream_refusal_naming_the_code():
    verdict = SLACK.classify_api_response(httpx2.Response(200, json={"ok": False, "error": "brand_new_error"}))
    assert verdict.verdict is Verdict.UPSTREAM and "brand_new_error" in verdict.message


def test_slack_http_200_errors_map_to_their_failure_classes():
    expected = {
        "token_expired": Verdict.EXPIRED,
        "invalid_auth": Verdict.AUTH_FAILED,
        "token_revoked": Verdict.REVOKED,
        "account_inactive": Verdict.INACTIVE,
    }
    for error, verdict in expected.items():
        assert SLACK.classify_api_response(httpx2.Response(200, json={"ok": False, "error": error})).verdict is verdict


def test_token_endpoint_errors_are_classified_per_provider():
    assert SLACK.classify_token_error("invalid_refresh_token", 200).value == "rejected"
    assert GITHUB.classify_token_error("bad_refresh_token", 200).value == "rejected"
    assert GITHUB.classify_token_error("incorrect_client_credentials", 200).value == "client_misconfigured"
