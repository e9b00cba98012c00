"""URL-mode elicitation: a client that declares it gets JSON-RPC error -32042 carrying the magic link; a client
that does not gets the structured `reauth_required` result."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp.types import ElicitCompleteNotification, ElicitResult

from server.app import build_server
from server.auth import create_api_key
from simulators.seeding import seed_account
from tests.reauth.conftest import SLACK_ALICE
from tests.support.mcp import call
from tests.support.web import http_session

pytestmark = pytest.mark.anyio
READ = {"channel": "C0GENERAL", "limit": 1}
URL_ELICITATION_REQUIRED = -32042


async def decline(context, params) -> ElicitResult:
    """A client that can open URLs for its user (declaring elicitation); never asked in these tests."""
    return ElicitResult(action="decline")


def revoke_alices_slack(runtime, settings, slack_sim) -> str:
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.revoke()
    return account.id


async def test_a_client_declaring_url_elicitation_gets_the_link_as_error_32042(runtime, settings, slack_sim):
    revoke_alices_slack(runtime, settings, slack_sim)
    server, _ = build_server(runtime)

    async with Client(server, elicitation_callback=decline) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("slack_read_channel", READ)

    assert raised.value.error.code == URL_ELICITATION_REQUIRED
    [elicitation] = UrlElicitationRequiredError.from_error(raised.value.error).elicitations
    assert elicitation.url.startswith(f"{settings.public_url}/connect/")
    assert "acme/alice/slack" in elicitation.message and "token_revoked" in elicitation.message
    assert elicitation.elicitation_id and elicitation.elicitation_id not in elicitation.url


async def test_a_client_not_declaring_it_gets_the_structured_result(runtime, settings, slack_sim):
    revoke_alices_slack(runtime, settings, slack_sim)
    server, _ = build_server(runtime)

    async with Client(server) as client:
        result = await call(client, "slack_read_channel", READ)

    assert result["status"] == "reauth_required"
    assert result["magic_link"].startswith(f"{settings.public_url}/connect/")


async def test_url_elicitation_over_streamable_http_carries_a_working_link(runtime, settings, slack_sim, web, user):
    account_id = revoke_alices_slack(runtime, settings, slack_sim)
    key = create_api_key(runtime.vault, org="acme", user="alice").key

    async with http_session(web, key, elicitation_callback=decline) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("slack_read_channel", READ)
        assert raised.value.error.code == URL_ELICITATION_REQUIRED
        [elicitation] = UrlElicitationRequiredError.from_error(raised.value.error).elicitations

        page = await user.reconnect(elicitation.url)
        assert page.status_code == 200
        assert (await session.call_tool("slack_read_channel", READ)).structured_content["status"] == "ok"
    assert runtime.vault.accounts.get(account_id).status == "active"
    async with http_session(web, key) as plain:
        assert (await plain.call_tool("accounts_list", {})).structured_content["status"] == "ok"


async def test_a_client_that_got_the_link_is_told_when_the_owner_completes_it(runtime, settings, slack_sim, web, user):
    revoke_alices_slack(runtime, settings, slack_sim)
    server, _ = build_server(runtime)
    completed: list[str] = []
    told = anyio.Event()

    async def notifications(message) -> None:
        if isinstance(message, ElicitCompleteNotification):
            completed.append(message.params.elicitation_id)
            told.set()

    # notifications/elicitation/complete is MCP 2025-11-25 (the handshake era; 2026-07-28 dropped it).
    async with Client(server, mode="legacy", elicitation_callback=decline, message_handler=notifications) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("slack_read_channel", READ)
        [elicitation] = UrlElicitationRequiredError.from_error(raised.value.error).elicitations
        assert completed == []

        page = await user.reconnect(elicitation.url)
        assert page.status_code == 200
        with anyio.fail_after(10):
            await told.wait()
        assert completed == [elicitation.elicitation_id]
        assert (await client.call_tool("slack_read_channel", READ)).structured_content["status"] == "ok"
