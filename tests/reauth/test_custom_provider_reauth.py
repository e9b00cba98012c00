"""A provider declared in config.toml is reconnected through a magic link like a built-in one, identity check
included (the declared health probe's account id field names the account)."""

from __future__ import annotations

import pytest

from simulators import SimulatorServer
from simulators.person import link_user
from tests.support.custom import ACME_CLIENT, acme_declaration, opened_runtime, write_config
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of, vault_rows, web_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def acme(env, oauth2_server: SimulatorServer, isolated_environment, monkeypatch):
    for key, value in ACME_CLIENT.items():
        monkeypatch.setenv(key, value)
    write_config(isolated_environment, acme_declaration(oauth2_server.url))
    oauth2_server.app = type(oauth2_server.app)()
    return oauth2_server.app


async def test_a_declared_provider_is_reconnected_by_link_and_the_next_call_works(acme):
    async with opened_runtime() as runtime, web_server(runtime):
        async with mcp_client(runtime) as client:
            first = await call(client, "acme_list_projects", {})
            assert (first["status"], first["reason"]) == ("reauth_required", "not_connected")
            async with link_user() as owner:
                page = await owner.reconnect(first["magic_link"])
            assert outcome_of(page) == "reconnected"
            after = await call(client, "acme_list_projects", {})
        account = runtime.vault.accounts.find("acme", "alice", "acme")

    assert after["status"] == "ok" and after["http_status"] == 200
    assert account.status == "active" and account.provider_account_id is not None


async def test_a_declared_provider_refuses_another_user_on_reconnect(acme):
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        connect = await call(client, "acme_list_projects", {})
        async with link_user() as owner:
            await owner.reconnect(connect["magic_link"])
        acme.revoke()
        gone = await call(client, "acme_list_projects", {})
        assert gone["status"] == "reauth_required"
        before = vault_rows(runtime)
        async with link_user() as someone_else:
            page = await someone_else.reconnect(gone["magic_link"], sub="user-mallory")
        assert outcome_of(page) == "identity_mismatch"
        changed = {
            name: rows
            for name, rows in vault_rows(runtime).items()
            if name not in ("magic_link", "lifecycle_event") and rows != before[name]
        }
    assert changed == {}
