"""The grantkeeper command as a person runs it: import tokens, list accounts, check grants (exit codes)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def grantkeeper(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_accounts_add_imports_tokens_and_list_shows_them_without_secrets(env, slack_sim):
    tokens = slack_sim.issue_grant()
    payload = json.dumps(
        {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_in": 43200,
            "scope": "channels:history,chat:write",
        }
    )

    added = grantkeeper(env, "accounts", "add", "slack", stdin=payload)
    listed = grantkeeper(env, "accounts", "list", "--json")

    assert added.returncode == 0, added.stderr
    assert "stored acme/alice/slack" in added.stdout
    rows = json.loads(listed.stdout)
    assert [(r["account"], r["status"]) for r in rows] == [("acme/alice/slack", "active")]
    for output in (added.stdout, added.stderr, listed.stdout, listed.stderr):
        assert tokens.access_token not in output and tokens.refresh_token not in output


def test_accounts_add_refuses_bad_input_clearly_and_stores_nothing(env):
    for stdin, message in (
        ("not json", "not JSON"),
        ('{"refresh_token": "x"}', "access_token"),
        ('{"access_token": "xoxe.xoxb-1-abc", "expires_in": -5}', "positive number"),
    ):
        result = grantkeeper(env, "accounts", "add", "slack", stdin=stdin)
        assert result.returncode == 2
        assert message in result.stderr
        assert "xoxe.xoxb-1-abc" not in result.stderr
    assert grantkeeper(env, "accounts", "add", "nosuch", stdin="{}").returncode == 2
    assert grantkeeper(env, "accounts", "list").stdout.strip() == "no accounts"


def test_accounts_add_twice_needs_replace(env, slack_sim):
    payload = json.dumps({"access_token": slack_sim.issue_grant().access_token})
    assert grantkeeper(env, "accounts", "add", "slack", stdin=payload).returncode == 0
    again = grantkeeper(env, "accounts", "add", "slack", stdin=payload)
    assert again.returncode == 2 and "--replace" in again.stderr
    assert grantkeeper(env, "accounts", "add", "slack", "--replace", stdin=payload).returncode == 0


def test_check_passes_on_healthy_grants_and_refreshes_expired_ones(env, slack_sim, github_sim):
    expired = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    for connector, sim in (("slack", slack_sim), ("github", github_sim)):
        tokens = sim.issue_grant()
        payload = json.dumps({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token, "expires_at": expired})
        assert grantkeeper(env, "accounts", "add", connector, stdin=payload).returncode == 0

    result = grantkeeper(env, "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "acme/alice/github" in result.stdout and "acme/alice/slack" in result.stdout
    assert slack_sim.counters.token_requests == github_sim.counters.token_requests == 1


def test_check_exits_non_zero_naming_each_account_that_needs_reauthorization(env, slack_sim, github_sim):
    for connector, sim, user in (("slack", slack_sim, "alice"), ("github", github_sim, "alice"), ("slack", slack_sim, "bob")):
        tokens = sim.issue_grant(identity={"user_id": f"U{user.upper()}"} if connector == "slack" else None)
        payload = json.dumps({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token})
        assert grantkeeper(env, "accounts", "add", connector, "--user", user, stdin=payload).returncode == 0
    github_sim.revoke()
    slack_sim.deactivate()

    result = grantkeeper(env, "check")

    assert result.returncode == 1
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "NEEDS RE-AUTHORIZATION" in lines["acme/alice/github"]
    assert "/connect/" in lines["acme/alice/github"]
    assert "ADMIN_ACTION_REQUIRED" in lines["acme/alice/slack"]
    assert "ADMIN_ACTION_REQUIRED" in lines["acme/bob/slack"]


def test_bad_configuration_is_a_clear_error_without_echoing_values(env):
    result = grantkeeper({**env, "GRANTKEEPER_SLACK_API_BASE_URL": "http://slack.example.com/api"}, "accounts", "list")
    assert result.returncode == 2
    assert "plain http on a non-loopback host" in result.stderr
    bad_key = grantkeeper({**env, "GRANTKEEPER_VAULT_KEY": "k1:dGVzdA"}, "accounts", "list")
    assert bad_key.returncode == 2 and "32 bytes" in bad_key.stderr and "dGVzdA" not in bad_key.stderr


def test_accounts_add_pins_the_provider_account_so_a_forwarded_link_cannot_attach_another(env, github_sim):
    tokens = github_sim.issue_grant()
    added = grantkeeper(
        env,
        "accounts",
        "add",
        "github",
        stdin=json.dumps({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token, "expires_in": 28800}),
    )
    listed = json.loads(grantkeeper(env, "accounts", "list", "--json").stdout)

    assert added.returncode == 0, added.stderr
    assert "provider account 1" in added.stdout
    assert listed[0]["provider_account_id"] == "1"
    assert github_sim.counters.token_requests == 0


def test_accounts_add_says_when_the_provider_account_stays_unknown(env, slack_sim):
    tokens = slack_sim.issue_grant()
    expired = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    added = grantkeeper(
        env,
        "accounts",
        "add",
        "slack",
        stdin=json.dumps({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token, "expires_at": expired}),
    )
    assert added.returncode == 0
    assert "provider account unknown" in added.stderr and "provider_account_id" in added.stderr
    assert slack_sim.counters.token_requests == 0


def test_a_bad_setting_is_exit_2_naming_it_for_every_command(env):
    commands = [
        ("serve",),
        ("link", "slack"),
        ("check",),
        ("accounts", "list"),
        ("keys", "list"),
        ("vault", "rekey"),
        ("webhooks", "list"),
        ("sessions", "list"),
    ]
    for setting, value in (
        ("GRANTKEEPER_LOG_LEVEL", "banana"),
        ("GRANTKEEPER_DATABASE_URL", "mysql://db/grants"),
        ("GRANTKEEPER_HOME", ""),
    ):
        for command in commands:
            result = grantkeeper({**env, setting: value}, *command)
            assert result.returncode == 2, (setting, command, result.stderr)
            assert setting in result.stderr and "Traceback" not in result.stderr


def test_a_shared_database_without_a_vault_key_refuses_to_start_and_creates_no_key_file(env, tmp_path):
    if "GRANTKEEPER_DATABASE_URL" not in env:
        env = {**env, "GRANTKEEPER_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}
    home = tmp_path / "fresh-home"
    for command in (("serve",), ("accounts", "list")):
        result = grantkeeper({**env, "GRANTKEEPER_VAULT_KEY": "", "GRANTKEEPER_HOME": str(home)}, *command)
        assert result.returncode == 2, result.stderr
        assert "GRANTKEEPER_VAULT_KEY" in result.stderr and "Traceback" not in result.stderr
    assert not (home / "vault.key").exists()


def test_link_and_check_point_at_the_configured_listen_port(env, slack_sim):
    listening = {**env, "GRANTKEEPER_LISTEN_PORT": "9123"}
    env_without_url = {k: v for k, v in listening.items() if k != "GRANTKEEPER_PUBLIC_URL"}
    linked = grantkeeper(env_without_url, "link", "slack")
    assert linked.returncode == 0, linked.stderr
    assert linked.stdout.startswith("http://127.0.0.1:9123/connect/")

    payload = json.dumps({"access_token": slack_sim.issue_grant().access_token})
    assert grantkeeper(env_without_url, "accounts", "add", "slack", "--replace", stdin=payload).returncode == 0
    slack_sim.revoke()
    checked = grantkeeper(env_without_url, "check")
    assert checked.returncode == 1
    assert "NEEDS RE-AUTHORIZATION" in checked.stdout and "http://127.0.0.1:9123/connect/" in checked.stdout


def test_check_with_no_accounts_says_so(env):
    result = grantkeeper(env, "check")
    assert result.returncode == 0 and result.stdout.startswith("no accounts to check")


def test_version_and_every_option_has_help_text():
    from server.cli.parser import build_parser

    version = subprocess.run([sys.executable, "-m", "server", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("grantkeeper ")

    def undocumented(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from undocumented(sub, f"{path} {name}")
            elif not action.help:
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"

    assert list(undocumented(build_parser(), "grantkeeper")) == []


def test_link_refuses_a_connector_without_client_credentials_naming_the_settings(env):
    result = grantkeeper({**env, "GRANTKEEPER_SLACK_CLIENT_SECRET": ""}, "link", "slack")
    assert result.returncode == 2 and result.stdout == ""
    assert "GRANTKEEPER_SLACK_CLIENT_ID and GRANTKEEPER_SLACK_CLIENT_SECRET" in result.stderr
