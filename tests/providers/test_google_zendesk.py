"""Google and Zendesk knowledge that needs no network: classifiers on answers the simulators do not produce,
Calendar event ids, RFC 822 bodies, and how connectors find their hosts."""

from __future__ import annotations

import base64
import re
from email import message_from_bytes, policy

import httpx2
import pytest

from providers.base import Verdict
from providers.google import PROVIDER as GOOGLE
from providers.google import event_id_for, rfc822_raw
from providers.zendesk import PROVIDER as ZENDESK
from server.connectors import load_connectors
from server.monitoring.logging import redact_text
from server.settings import Settings


def google_error(status: int, reason: str, domain: str = "global") -> httpx2.Response:
    return httpx2.Response(
        status, json={"error": {"code": status, "message": reason, "errors": [{"reason": reason, "domain": domain}]}}
    )


def test_google_usage_limits_back_off_and_daily_limits_wait_long():
    slow_down = GOOGLE.classify_api_response(google_error(403, "userRateLimitExceeded", "usageLimits"))
    assert (slow_down.verdict, slow_down.retry_after) == (Verdict.RATE_LIMITED, None)
    bare_429 = GOOGLE.classify_api_response(httpx2.Response(429, text="<html>Too Many Requests</html>"))
    assert (bare_429.verdict, bare_429.retry_after) == (Verdict.RATE_LIMITED, None)
    daily = GOOGLE.classify_api_response(google_error(403, "dailyLimitExceeded", "usageLimits"))
    assert daily.verdict is Verdict.RATE_LIMITED and daily.retry_after == 3600


def test_google_403_without_a_usage_limit_is_a_permission_problem():
    verdict = GOOGLE.classify_api_response(google_error(403, "insufficientPermissions"))
    assert (verdict.verdict, verdict.reason) == (Verdict.FORBIDDEN, "insufficientPermissions")


def test_google_409_duplicate_and_other_refusals():
    assert GOOGLE.classify_api_response(google_error(409, "duplicate")).reason == "duplicate"
    assert GOOGLE.classify_api_response(google_error(400, "invalid")).verdict is Verdict.INVALID_INPUT
    assert GOOGLE.classify_api_response(google_error(401, "authError")).verdict is Verdict.AUTH_FAILED
    assert GOOGLE.classify_api_response(google_error(404, "notFound")).verdict is Verdict.NOT_FOUND
    assert GOOGLE.classify_api_response(google_error(503, "backendError")).verdict is Verdict.TRANSIENT
    assert GOOGLE.classify_token_error("invalid_grant", 400).value == "rejected"


def test_zendesk_classifier_reads_zendesks_shapes():
    limited = ZENDESK.classify_api_response(
        httpx2.Response(429, text="Number of allowed API requests per minute exceeded", headers={"Retry-After": "30"})
    )
    assert (limited.verdict, limited.retry_after) == (Verdict.RATE_LIMITED, 30.0)
    reused = ZENDESK.classify_api_response(
        httpx2.Response(
            400,
            json={"error": "IdempotentRequestError", "description": "Request parameters don't match the given idempotency key"},
        )
    )
    assert (reused.verdict, reused.reason) == (Verdict.INVALID_INPUT, "idempotency_key_reused")
    invalid = ZENDESK.classify_api_response(
        httpx2.Response(
            422,
            json={
                "error": "RecordInvalid",
                "description": "Record validation errors",
                "details": {"description": [{"description": "Description: cannot be blank", "error": "BlankValue"}]},
            },
        )
    )
    assert invalid.verdict is Verdict.INVALID_INPUT and "cannot be blank" in invalid.message
    dead = ZENDESK.classify_api_response(httpx2.Response(401, json={"error": "invalid_token"}))
    assert (dead.verdict, dead.reason) == (Verdict.AUTH_FAILED, "invalid_token")
    maintenance = ZENDESK.classify_api_response(httpx2.Response(503, headers={"Retry-After": "5"}))
    assert maintenance.verdict is Verdict.TRANSIENT
    assert ZENDESK.classify_token_error("invalid_grant", 400).value == "rejected"
    assert ZENDESK.classify_token_error("invalid_client", 401).value == "client_misconfigured"


def test_event_ids_are_base32hex_stable_and_distinct_per_key():
    first, again, other = event_id_for("review-1"), event_id_for("review-1"), event_id_for("review-2")
    assert first == again != other
    assert re.fullmatch(r"[a-v0-9]{5,1024}", first)


def test_rfc822_raw_is_base64url_of_a_plain_text_mail():
    raw = rfc822_raw(to=["bob@example.com", "dan@example.com"], subject="Grüße", body="Hallo ✓", cc=["c@example.org"])
    assert "+" not in raw and "/" not in raw
    parsed = message_from_bytes(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)), policy=policy.default)
    assert parsed["To"] == "bob@example.com, dan@example.com" and parsed["Cc"] == "c@example.org"
    assert parsed["Subject"] == "Grüße" and parsed.get_content().strip() == "Hallo ✓"


def test_google_authorize_page_follows_an_oauth_override_and_keeps_its_parameters(isolated_environment, monkeypatch):
    default = load_connectors(Settings())["google"]
    assert default.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert default.token_url == "https://oauth2.googleapis.com/token"
    assert default.spec.authorize_params == {"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"}
    monkeypatch.setenv("GRANTKEEPER_GOOGLE_OAUTH_BASE_URL", "http://127.0.0.1:9100")
    moved = load_connectors(Settings())["google"]
    assert moved.authorize_url == "http://127.0.0.1:9100/o/oauth2/v2/auth"
    assert moved.token_url == "http://127.0.0.1:9100/token"


@pytest.mark.parametrize("api_base_url", [None, "https://acme.zendesk.com"])
def test_zendesk_has_no_default_host_and_serves_oauth_from_the_one_configured(isolated_environment, monkeypatch, api_base_url):
    if api_base_url:
        monkeypatch.setenv("GRANTKEEPER_ZENDESK_API_BASE_URL", api_base_url)
    zendesk = load_connectors(Settings())["zendesk"]
    if api_base_url is None:
        assert zendesk.missing_base_url == (
            "Zendesk has no fixed address: set GRANTKEEPER_ZENDESK_API_BASE_URL (e.g. https://yourcompany.zendesk.com)."
        )
    else:
        assert zendesk.missing_base_url is None
        assert zendesk.token_url == "https://acme.zendesk.com/oauth/tokens"
        assert zendesk.authorize_url == "https://acme.zendesk.com/oauth/authorizations/new"
        assert zendesk.spec.token_body_encoding == "json"


def test_google_token_shapes_are_redacted_from_log_text():
    text = "refreshed with 1//0gAbCdEfGhIjKlMnOpQrStUvWxYz-_0123 got ya29.a0AfB_byC-xyz"
    assert redact_text(text) == "refreshed with [redacted] got [redacted]"
