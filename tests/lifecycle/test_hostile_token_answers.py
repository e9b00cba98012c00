"""Token endpoints that answer oddly (on SQLite and PostgreSQL): absurd lifetimes, huge or missing tokens, answers
that are not JSON, answers that never finish. In each case the grant is never lost when the provider did not rotate,
and never silently kept as working when it did.

Slack rotates (and detects reuse of a spent refresh token); Google does not rotate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session

from server.failures import GrantGoneError, UpstreamCallError
from server.lifecycle.oauth import MAX_ACCESS_LIFETIME_SECONDS
from server.settings import Settings
from server.vault.models import Credential, utcnow
from simulators.seeding import seed_account
from tests.support.cooldown import end_the_cooldown
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}
SLACK_DEFAULT_LIFETIME = 43200


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("GRANTKEEPER_REFRESH_TIMEOUT_SECONDS", "1")
    return Settings()


async def read_channel(runtime) -> dict:
    async with mcp_client(runtime) as client:
        return await call(client, "slack_read_channel", READ)


def expire_our_copy(vault, account_id: str) -> None:
    """Our stored access token expires (instead of waiting for it to)."""
    with Session(vault.engine) as session:
        session.execute(
            update(Credential)
            .where(Credential.account_id == account_id)
            .values(access_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def assert_rotated_pair_works(runtime, slack_sim, account_id: str, calls_before: int) -> None:
    """The stored refresh token is the live one: a refresh with it succeeds and trips no reuse detection."""
    assert slack_sim.counters.reuse_detections == 0
    assert slack_sim.counters.refreshes_ok == calls_before + 1
    assert runtime.vault.accounts.get(account_id).status == "active"


# ---- absurd lifetimes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        (1e300, MAX_ACCESS_LIFETIME_SECONDS),
        (1e21, MAX_ACCESS_LIFETIME_SECONDS),
        (10**400, SLACK_DEFAULT_LIFETIME),  # an integer too long for int(): read as a float, infinite, so unknown
        (float("inf"), SLACK_DEFAULT_LIFETIME),  # the bare word Infinity, as some JSON encoders write it
        ("Infinity", SLACK_DEFAULT_LIFETIME),
        (-5, SLACK_DEFAULT_LIFETIME),
        ("abc", SLACK_DEFAULT_LIFETIME),
        (True, SLACK_DEFAULT_LIFETIME),
    ],
    ids=["1e300", "1e21", "10**400", "Infinity", "Infinity-string", "negative", "text", "boolean"],
)
async def test_an_absurd_expires_in_is_clamped_and_the_rotated_tokens_are_kept(
    runtime, settings, slack_sim, expires_in, lifetime
):
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens, expired=True)
    slack_sim.token_endpoint_answer(set_fields={"expires_in": expires_in})
    before = utcnow()

    result = await read_channel(runtime)

    assert result["status"] == "ok"
    row = runtime.vault.credentials.read(account.id)
    assert row.version == 2 and row.refresh_token != tokens.refresh_token
    expected = before + timedelta(seconds=lifetime)
    assert expected - timedelta(minutes=1) <= row.access_expires_at <= expected + timedelta(minutes=1)
    # And the grant goes on: the next refresh presents the rotated refresh token.
    expire_our_copy(runtime.vault, account.id)
    runtime.tokens.forget(account.id)
    assert (await read_channel(runtime))["status"] == "ok"
    assert_rotated_pair_works(runtime, slack_sim, account.id, calls_before=1)


# ---- huge tokens -------------------------------------------------------------------------------------------------
async def test_an_access_token_too_large_to_send_is_refused_but_the_rotated_refresh_token_is_kept(runtime, settings, slack_sim):
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens, expired=True)
    # Every attempt of the call (and its retries) gets an access token that fits the answer bound, not a header.
    slack_sim.token_endpoint_answer(count=settings.retry_attempts, set_fields={"access_token": "x" * 40_000})

    result = await read_channel(runtime)

    assert (result["status"], result["reason"]) == ("upstream_error", "token_response_unusable")
    attempts = slack_sim.counters.refreshes_ok
    assert attempts == settings.retry_attempts  # each rotated...
    row = runtime.vault.credentials.read(account.id)
    assert row.version == 1 + attempts and row.refresh_token != tokens.refresh_token  # ...and each was stored
    assert row.access_token == tokens.access_token  # never the huge one
    assert row.last_refresh_outcome == "access_token_unusable" and row.consecutive_failures == attempts
    events = runtime.vault.events.recent(account.id, kind="refresh_answer_defective")
    assert [(e.detail["defect"], e.severity) for e in events] == [("access_token_unusable", "error")] * attempts
    # Once the provider answers sensibly again, the kept refresh token works.
    assert (await read_channel(runtime))["status"] == "ok"
    assert_rotated_pair_works(runtime, slack_sim, account.id, calls_before=attempts)


async def test_a_200_kb_answer_is_refused_unread_and_after_a_rotation_the_grant_says_refresh_interrupted(
    runtime, settings, slack_sim
):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_answer(set_fields={"access_token": "x" * 200_000})

    first = await read_channel(runtime)
    assert (first["status"], first["reason"]) == ("upstream_error", "token_endpoint_unavailable")
    end_the_cooldown(runtime.vault, account.id)
    result = await read_channel(runtime)

    # The answer was refused past 64 KiB, so it counts as maybe rotated; the next attempt presented the refresh
    # token again to find out, and the provider had rotated: the grant is gone, and says why.
    [refused, rejected] = reversed(runtime.vault.events.recent(account.id, kind="refresh_failed"))
    assert (refused.detail["provider_error"], refused.detail["outcome"]) == ("response_too_large", "ambiguous")
    assert rejected.detail["reason"] == "refresh_interrupted"
    assert (result["status"], result["reason"]) == ("reauth_required", "refresh_interrupted")
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_interrupted")
    assert runtime.vault.credentials.read(account.id).version == 1  # nothing of the huge answer was stored


async def test_a_200_kb_answer_from_a_provider_that_does_not_rotate_loses_nothing(runtime, settings, google_sim):
    tokens = google_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "google", tokens, expired=True)
    google_sim.token_endpoint_answer(set_fields={"access_token": "x" * 200_000})

    with pytest.raises(UpstreamCallError) as refused:
        await runtime.tokens.fresh_token(account)
    assert refused.value.reason == "token_endpoint_unavailable"
    end_the_cooldown(runtime.vault, account.id)

    snapshot = await runtime.tokens.fresh_token(account)  # the same refresh token, still valid
    assert snapshot.version == 2 and snapshot.refresh_token == tokens.refresh_token
    assert runtime.vault.accounts.get(account.id).status == "active"


# ---- a missing refresh token -------------------------------------------------------------------------------------
async def test_a_rotating_provider_that_sends_no_new_refresh_token_never_gets_the_spent_one_again(runtime, settings, slack_sim):
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens, expired=True)
    slack_sim.token_endpoint_answer(drop_fields=("refresh_token",))

    result = await read_channel(runtime)

    assert result["status"] == "ok"  # the new access token is good while it lasts
    row = runtime.vault.credentials.read(account.id)
    assert row.version == 2 and row.refresh_token is None  # the spent one is not kept to be presented again
    assert row.refresh_due_at is None and row.last_refresh_outcome == "refresh_token_missing"
    [event] = runtime.vault.events.recent(account.id, kind="refresh_answer_defective")
    assert event.detail["defect"] == "refresh_token_missing"
    stored = runtime.vault.accounts.get(account.id)  # not plain `active`: it will need its user at expiry
    assert (stored.status, stored.status_reason) == ("active", "no_refresh_token")

    expire_our_copy(runtime.vault, account.id)
    runtime.tokens.forget(account.id)
    after_expiry = await read_channel(runtime)

    assert (after_expiry["status"], after_expiry["reason"]) == ("reauth_required", "refresh_token_missing")
    assert slack_sim.counters.token_requests == 1  # nothing presented after the answer
    assert slack_sim.counters.reuse_detections == 0


# ---- answers that are not JSON -----------------------------------------------------------------------------------
async def test_a_non_json_answer_before_processing_loses_nothing(runtime, settings, slack_sim):
    tokens = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", tokens, expired=True)
    slack_sim.token_endpoint_answer(body="<html>Service Temporarily Unavailable</html>", after_processing=False)

    first = await read_channel(runtime)
    assert (first["status"], first["reason"]) == ("upstream_error", "token_endpoint_unavailable")
    end_the_cooldown(runtime.vault, account.id)
    result = await read_channel(runtime)

    # We could not know it had not rotated (outcome ambiguous); presenting the token again showed it had not.
    [failed] = runtime.vault.events.recent(account.id, kind="refresh_failed")
    assert (failed.detail["provider_error"], failed.detail["outcome"]) == ("malformed_response", "ambiguous")
    assert result["status"] == "ok"
    assert_rotated_pair_works(runtime, slack_sim, account.id, calls_before=0)


async def test_a_non_json_answer_after_a_rotation_ends_as_refresh_interrupted(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_answer(body="<html>OK</html>")

    first = await read_channel(runtime)
    assert (first["status"], first["reason"]) == ("upstream_error", "token_endpoint_unavailable")
    end_the_cooldown(runtime.vault, account.id)
    result = await read_channel(runtime)

    assert (result["status"], result["reason"]) == ("reauth_required", "refresh_interrupted")
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "refresh_interrupted")
    assert slack_sim.counters.refreshes_ok == 1  # it did rotate: keeping the grant as working would be a lie


# ---- answers that never finish -----------------------------------------------------------------------------------
async def test_an_answer_trickling_past_the_deadline_is_cut_there_and_counted_as_maybe_rotated(runtime, settings, slack_sim):
    """Each byte arrives long before the (per-read) timeout; only the total deadline (1 s here) ends it. Without
    that deadline this refresh would wait out the 60 s trickle and succeed."""
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), expired=True)
    slack_sim.token_endpoint_drip(count=1, seconds=60)

    with pytest.raises(UpstreamCallError) as cut_off:
        await runtime.tokens.fresh_token(account)

    assert cut_off.value.reason == "token_endpoint_unavailable"
    [failed] = runtime.vault.events.recent(account.id, kind="refresh_failed")
    assert failed.detail["provider_error"] == "deadline_exceeded"
    row = runtime.vault.credentials.read(account.id)
    assert (row.version, row.last_refresh_outcome, row.lease_owner) == (1, "ambiguous", None)
    assert slack_sim.counters.refreshes_ok == 1  # it had rotated: the next attempt says refresh_interrupted
    end_the_cooldown(runtime.vault, account.id)
    with pytest.raises(GrantGoneError) as gone:
        await runtime.tokens.fresh_token(account)
    assert gone.value.reason == "refresh_interrupted"
