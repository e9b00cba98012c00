"""No silent dead ends: an account connected without a refresh token is stored as such, warned about (event and
alert) at connect time, offered a reconnect link ahead of expiry, and never listed as plain `active`; once its
access token expires it is `reauth_required` in the vault too."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.lifecycle.health import HealthMonitor
from simulators import OAuth2Simulator, SimulatorServer
from simulators.person import link_user
from simulators.seeding import seed_account
from tests.reauth.test_oidc_declared_provider import oidc_declaration
from tests.support.custom import ACME_CLIENT, opened_runtime, write_config
from tests.support.mcp import call, mcp_client
from tests.support.web import outcome_of, vault_rows, web_server

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def refusing(env, oauth2_server: SimulatorServer, isolated_environment: Path, monkeypatch) -> OAuth2Simulator:
    """A stock OIDC server switched to refuse refresh tokens, declared without any special setting."""
    for key, value in ACME_CLIENT.items():
        monkeypatch.setenv(key, value)
    oauth2_server.app = OAuth2Simulator(oidc=True, refresh_tokens="never")
    write_config(isolated_environment, oidc_declaration(oauth2_server.url))
    return oauth2_server.app


def grantkeeper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )


async def test_a_grant_without_refresh_token_is_warned_about_listed_as_such_and_offered_a_link_ahead(refusing):
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        first = await call(client, "acme_list_projects", {})
        async with link_user() as owner:
            page = await owner.reconnect(first["magic_link"])
        account = runtime.vault.accounts.find("acme", "alice", "acme")
        credential = runtime.vault.credentials.read(account.id)
        events = {event.kind: event for event in runtime.vault.events.recent(account_id=account.id)}
        incidents = vault_rows(runtime)["alert_incident"]
        works = await call(client, "acme_list_projects", {})
        listing = await client.call_tool("accounts_list", {})
        listed_again = await call(client, "accounts_list", {})
        reconnect_links = [link for link in vault_rows(runtime)["magic_link"] if link["account_id"] == account.id]
        await HealthMonitor(runtime.settings, runtime.vault, runtime.executor, runtime.events).check(account, trigger="test")
        due = [event for event in runtime.vault.events.recent(account_id=account.id, kind="reconnect_due")]

        # The link offered ahead of time reconnects; a server that now grants a refresh token ends the warning.
        row = next(a for a in listing.structured_content["accounts"] if a["connector"] == "acme")
        refusing.refresh_tokens = "offline_consent"
        async with link_user() as owner:
            again = await owner.reconnect(row["reconnect_link"])
        after = runtime.vault.accounts.find("acme", "alice", "acme")
        relisted = await call(client, "accounts_list", {})

    assert outcome_of(page) == "reconnected" and "no refresh token" in page.text
    assert refusing.counters.endpoint("refresh_token_withheld") == 1
    assert credential.refresh_token is None and credential.access_expires_at is not None
    assert (account.status, account.status_reason) == ("active", "no_refresh_token")
    missing = events["refresh_token_missing"]
    assert missing.severity == "warning"
    assert missing.detail["needs_user_at"] == credential.access_expires_at.isoformat()
    assert any(row["incident"] == "refresh_token_missing" and row["severity"] == "warning" for row in incidents)
    assert works["status"] == "ok"  # it does work until then

    assert row["status"] == "active" and row["reason"] == "no_refresh_token"
    assert row["needs_user_at"].replace("Z", "+00:00") == credential.access_expires_at.isoformat()
    assert row["reconnect_link"].startswith(runtime.settings.public_url + "/connect/")
    text = listing.content[0].text
    assert "will need the user at" in text and row["reconnect_link"] in text
    assert "acme/default: active\n" not in text + "\n"
    # Listing again while that link is open offers no second one: it says when the open one expires.
    again_acme = next(a for a in listed_again["accounts"] if a["connector"] == "acme")
    assert again_acme["reconnect_link"] is None and again_acme["link_expires_at"] == row["link_expires_at"]
    assert len(reconnect_links) == 2  # the first connect's link, and the one reconnect link
    assert len(due) == 1 and due[0].severity == "warning"

    assert outcome_of(again) == "reconnected"
    assert (after.status, after.status_reason) == ("active", None)
    relisted_acme = next(a for a in relisted["accounts"] if a["connector"] == "acme")
    assert relisted_acme["needs_user_at"] is None and relisted_acme["reconnect_link"] is None


async def test_the_cli_list_and_check_say_when_the_account_will_need_its_user(refusing):
    async with opened_runtime() as runtime, web_server(runtime), mcp_client(runtime) as client:
        first = await call(client, "acme_list_projects", {})
        async with link_user() as owner:
            await owner.reconnect(first["magic_link"])
    listed = grantkeeper("accounts", "list")
    checked = grantkeeper("check")

    line = next(line for line in listed.stdout.splitlines() if line.startswith("acme/alice/acme"))
    assert "no refresh token: will need the user at" in line and "grantkeeper link acme" in line
    check_line = next(line for line in checked.stdout.splitlines() if line.startswith("acme/alice/acme"))
    assert "ok, but no refresh token: will need the user at" in check_line


async def test_a_grant_whose_access_token_ran_out_without_refresh_token_is_not_left_active(refusing):
    async with opened_runtime() as runtime:
        tokens = dataclasses.replace(refusing.issue_grant(), refresh_token=None)
        seed_account(runtime.settings, runtime.vault, "acme", tokens, expired=True)
        async with mcp_client(runtime) as client:
            result = await call(client, "acme_list_projects", {})
            listing = await call(client, "accounts_list", {})
        account = runtime.vault.accounts.find("acme", "alice", "acme")
        kinds = [event.kind for event in runtime.vault.events.recent(account_id=account.id)]

    assert (result["status"], result["reason"]) == ("reauth_required", "access_token_expired")
    assert (account.status, account.status_reason) == ("reauth_required", "access_token_expired")
    assert "reauth_required" in kinds
    assert next(a for a in listing["accounts"] if a["connector"] == "acme")["status"] == "reauth_required"
