"""A provider's verdict on a token counts for the credential version the call used, and no other: a worker still
holding the token of a grant its user has since replaced never marks the reconnected account as needing the user."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from server.vault.models import MagicLink
from simulators.seeding import seed_account
from tests.support.mcp import call, mcp_client

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}


async def test_a_stale_tokens_revocation_does_not_mark_a_just_reconnected_account(runtime, settings, slack_sim):
    old = slack_sim.issue_grant()
    account = seed_account(settings, runtime.vault, "slack", old)
    async with mcp_client(runtime) as client:
        first = await call(client, "slack_read_channel", READ)  # this worker now holds version 1's token
        # The user revokes the app at Slack, then reconnects it: a new grant, stored as version 2.
        slack_sim.revoke(token=old.access_token)
        seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
        stale = await call(client, "slack_read_channel", READ)  # sent with version 1's token: token_revoked
        after = await call(client, "slack_read_channel", READ)

    assert runtime.vault.credentials.read(account.id).version == 2
    assert first["status"] == after["status"] == "ok"
    assert (stale["status"], stale["reason"], stale["retryable"]) == ("upstream_error", "reconnected_meanwhile", True)
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("active", None)
    assert runtime.vault.events.recent(account.id, kind="reauth_required") == []
    assert runtime.vault.events.recent(account.id, kind="status_changed") == []
    with Session(runtime.vault.engine) as session:
        assert list(session.exec(select(MagicLink))) == []  # nobody is asked to consent again
    assert slack_sim.counters.api_requests == 3 and slack_sim.counters.token_requests == 0


async def test_the_same_revocation_with_the_current_token_marks_the_account_once(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant())
    slack_sim.revoke()
    async with mcp_client(runtime) as client:
        results = [await call(client, "slack_read_channel", READ) for _ in range(2)]

    assert [(r["status"], r["reason"]) for r in results] == [("reauth_required", "token_revoked")] * 2
    stored = runtime.vault.accounts.get(account.id)
    assert (stored.status, stored.status_reason) == ("reauth_required", "token_revoked")
    assert [e.detail["reason"] for e in runtime.vault.events.recent(account.id, kind="reauth_required")] == ["token_revoked"]
    assert len(runtime.vault.events.recent(account.id, kind="status_changed")) == 1
    assert slack_sim.counters.api_requests == 1
