"""One connection pool serves every account of a connector, so a cookie an API answer sets for one account must
never ride on another account's request (or on the same account's next one: a session cookie a provider honours
would decide whose data a call sees, whatever the bearer token says). The simulators set a cookie on every API
answer and count the requests that carry one back."""

from __future__ import annotations

import pytest

from providers import slack
from server.execute import Caller, ProbeOk, ProviderSession
from server.runtime import Runtime
from simulators.seeding import seed_account

pytestmark = pytest.mark.anyio


async def read_as(runtime: Runtime, user: str) -> str:
    async def operation(api: ProviderSession) -> ProbeOk:
        page = await slack.conversations_history(api, channel="C0GENERAL", limit=1)
        return ProbeOk(detail=f"{len(page.messages)} message(s)")

    result = await runtime.executor.run(Caller("acme", user), "slack", operation)
    return result.status


async def test_a_cookie_one_accounts_answer_sets_is_never_sent_on_any_later_request(runtime: Runtime, slack_sim):
    for user in ("alice", "bob"):
        seed_account(runtime.settings, runtime.vault, "slack", slack_sim.issue_grant(), user=user)

    statuses = [await read_as(runtime, user) for user in ("alice", "bob", "alice", "bob")]

    assert statuses == ["ok"] * 4
    assert slack_sim.counters.api_requests == 4  # each answer set a cookie
    assert slack_sim.counters.cookies_presented == 0
    assert len(runtime.pools["slack"].client.cookies) == 0  # none kept to send
