"""The next action the console shows for each kind of account state, in words an operator can act on."""

from __future__ import annotations

import pytest

from server.connectors import load_connectors
from server.console.overview import account_rows
from server.settings import Settings
from server.vault import AccountStatus
from simulators.seeding import seed_account


def test_next_actions_in_words(runtime_sync, settings, slack_sim, github_sim):
    vault = runtime_sync.vault
    healthy = seed_account(settings, vault, "github", github_sim.issue_grant(), provider_account_id="1")
    revoked = seed_account(settings, vault, "slack", slack_sim.issue_grant(), provider_account_id="T:U")
    vault.accounts.set_status(revoked.id, AccountStatus.REAUTH_REQUIRED, "token_revoked")
    inactive = vault.accounts.create(org="acme", user="bob", connector="github")
    vault.accounts.set_status(inactive.id, AccountStatus.ADMIN_ACTION_REQUIRED, "account_inactive")
    disabled = vault.accounts.create(org="acme", user="carol", connector="github")
    vault.accounts.set_status(disabled.id, AccountStatus.DISABLED, "disabled_by_operator")

    rows = {row.id: row for row in account_rows(vault, load_connectors(settings))}

    assert (rows[healthy.id].needs_action, rows[healthy.id].next_action) == (False, "nothing to do")
    assert (rows[revoked.id].needs_action, rows[revoked.id].next_action) == (True, "reconnect — the user revoked access at Slack")
    assert rows[inactive.id].needs_action and "at GitHub (account_inactive)" in rows[inactive.id].next_action
    assert not rows[disabled.id].needs_action and rows[disabled.id].next_action.startswith("disabled")


def test_a_connector_without_its_address_says_which_setting(runtime_sync, settings, zendesk_sim, monkeypatch):
    account = seed_account(settings, runtime_sync.vault, "zendesk", zendesk_sim.issue_grant(), provider_account_id="1")
    monkeypatch.delenv("GRANTKEEPER_ZENDESK_API_BASE_URL")
    [row] = account_rows(runtime_sync.vault, load_connectors(Settings()))
    assert row.id == account.id
    assert (row.needs_action, row.next_action) == (True, "set GRANTKEEPER_ZENDESK_API_BASE_URL")


@pytest.mark.parametrize("reason", [None, "x" * 64, "<script>alert(1)</script>"])
def test_unknown_reasons_are_shown_as_recorded(runtime_sync, settings, reason):
    account = runtime_sync.vault.accounts.create(org="acme", user="alice", connector="slack")
    runtime_sync.vault.accounts.set_status(account.id, AccountStatus.REAUTH_REQUIRED, reason)
    [row] = account_rows(runtime_sync.vault, load_connectors(settings))
    assert row.needs_action and row.next_action.startswith("reconnect — Slack refused the grant")
