"""Rotating the vault key: a new first key seals, `grantkeeper vault rekey` re-seals the old rows, and the old key
can then be dropped without losing a grant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from server.runtime import open_vault
from server.settings import Settings
from server.vault.crypto import new_key_spec
from simulators.seeding import seed_account

ROOT = Path(__file__).resolve().parents[2]


def grantkeeper(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_rekey_moves_every_credential_to_the_new_key_and_the_old_key_can_go(env, slack_sim, github_sim, monkeypatch):
    old_vault, _ = open_vault(Settings())
    tokens = {"slack": slack_sim.issue_grant(), "github": github_sim.issue_grant()}
    accounts = {name: seed_account(Settings(), old_vault, name, grant) for name, grant in tokens.items()}
    old_key = env["GRANTKEEPER_VAULT_KEY"]

    made = grantkeeper(env, "vault", "new-key")
    new_key = made.stdout.strip()
    assert made.returncode == 0 and new_key != old_key and "rekey" in made.stderr
    both = {**env, "GRANTKEEPER_VAULT_KEY": f"{new_key},{old_key}"}
    rekeyed = grantkeeper(both, "vault", "rekey")
    again = grantkeeper(both, "vault", "rekey")

    assert rekeyed.returncode == 0, rekeyed.stderr
    assert "2 credential(s), 0 link flow(s); 0 credential(s) already were" in rekeyed.stdout
    assert "0 credential(s), 0 link flow(s); 2 credential(s) already were" in again.stdout  # the vault holds 2
    monkeypatch.setenv("GRANTKEEPER_VAULT_KEY", new_key)
    new_only, _ = open_vault(Settings())
    for name, account in accounts.items():
        assert new_only.credentials.read(account.id).access_token == tokens[name].access_token
    assert grantkeeper({**env, "GRANTKEEPER_VAULT_KEY": new_key}, "check").returncode == 0


def test_rekey_reports_secrets_no_configured_key_opens(env, slack_sim):
    vault, _ = open_vault(Settings())
    seed_account(Settings(), vault, "slack", slack_sim.issue_grant())
    stranger = grantkeeper({**env, "GRANTKEEPER_VAULT_KEY": new_key_spec()}, "vault", "rekey")
    assert stranger.returncode == 1
    assert "did not open" in stranger.stderr
    assert vault.credentials.read(vault.accounts.all()[0].id).access_token  # left as it was
