"""A magic link is a bearer secret until used, and so are the OAuth state, code and tokens: none reaches the log,
even at debug level, with the SDK's and uvicorn's loggers included."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from simulators.seeding import seed_account
from tests.reauth.conftest import SLACK_ALICE
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of

pytestmark = pytest.mark.anyio


async def test_link_token_state_code_and_tokens_never_reach_the_log(runtime, settings, slack_sim, web, user, log_output):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.revoke()
    async with mcp_client(runtime) as client:
        link = (await call(client, "slack_read_channel", {"channel": "C0GENERAL"}))["magic_link"]
    await user.open(link)
    started = await user.start(link)
    callback = await user.consent(started.headers["location"])
    page = await user.client.get(callback)
    assert outcome_of(page) == "reconnected"

    query = parse_qs(urlsplit(callback).query)
    stored = runtime.vault.credentials.read(account.id)
    secrets = {
        "link token": link.rsplit("/", 1)[1],
        "state": query["state"][0],
        "code": query["code"][0],
        "access token": stored.access_token,
        "refresh token": stored.refresh_token,
        "flow cookie": started.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1],
    }
    output = log_output.getvalue()
    assert "reauthorized" in output and "reauthorization_started" in output  # the log did capture the flow
    leaked = [name for name, value in secrets.items() if value and value in output]
    assert leaked == []
