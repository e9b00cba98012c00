"""`grantkeeper status` (exit 1 while an account needs action, 0 once it is reconnected), `events` (filters, and
--follow printing a refresh that happens while it runs), `accounts disable|enable|remove`, `audit`; and the
hostile versions of their arguments."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from server.execute import Caller
from simulators.seeding import seed_account
from tests.reauth.conftest import SLACK_ALICE

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


async def revoked_slack(runtime, settings, slack_sim):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    slack_sim.revoke()
    from server.console.actions import AccountActions

    await AccountActions(runtime).check_now(account, actor="test")
    return account


async def test_status_exits_non_zero_until_the_account_is_reconnected(
    runtime, settings, slack_sim, github_sim, web, user, cli, capsys
):
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id="1")
    account = await revoked_slack(runtime, settings, slack_sim)

    assert cli("status") == 1
    table = capsys.readouterr().out
    assert "acme/alice/slack" in table and "reconnect — the user revoked access at Slack" in table
    assert "1 of 2 account(s) need action" in table
    assert cli("status", "--json") == 1
    listing = json.loads(capsys.readouterr().out)
    assert listing["needs_action"] == 1
    assert {a["name"]: a["needs_action"] for a in listing["accounts"]} == {"acme/alice/github": False, "acme/alice/slack": True}

    _, link = await runtime.executor.connect_link(Caller("acme", "alice"), "slack")
    await user.reconnect(link.url)

    assert cli("status") == 0
    assert "all 2 account(s) fine" in capsys.readouterr().out
    assert runtime.vault.accounts.get(account.id).status == "active"


def test_disable_enable_remove_from_the_cli_are_audited(runtime_sync, settings, slack_sim, cli, capsys):
    runtime = runtime_sync
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)

    assert cli("accounts", "disable", "acme/alice/slack") == 0
    assert runtime.vault.accounts.get(account.id).status == "disabled"
    assert cli("accounts", "enable", account.id) == 0
    assert runtime.vault.accounts.get(account.id).status == "active"
    assert cli("accounts", "remove", "acme/alice/slack") == 0
    out = capsys.readouterr().out
    assert "grant ended at the provider" in out
    assert slack_sim.counters.revocations == 1
    removed = runtime.vault.accounts.get(account.id)
    assert (removed.status_reason, removed.removed_by.startswith("cli:")) == ("removed", True)

    assert cli("audit", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["account_disabled", "account_enabled", "account_removed"]
    assert {r["actor"] for r in rows} == {removed.removed_by}
    assert rows[-1]["detail"]["revocation"] == "done"
    assert cli("audit", "--actor", "somebody-else") == 0
    assert capsys.readouterr().out.strip() == "no audit rows"


async def test_events_filters_by_account_and_severity(runtime, settings, slack_sim, github_sim, cli, capsys):
    await revoked_slack(runtime, settings, slack_sim)
    seed_account(settings, runtime.vault, "github", github_sim.issue_grant(), provider_account_id="1")
    runtime.vault.events.record("note", account_id=None, severity="info", account="acme/alice/github")

    assert cli("events", "--account", "acme/alice/slack") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all("acme/alice/slack" in line for line in lines)
    assert cli("events", "--severity", "critical") == 0
    critical = capsys.readouterr().out.splitlines()
    assert critical and all(" critical " in line for line in critical)
    assert any("reauth_required" in line for line in critical)
    assert cli("events", "--since", "1d") == 0 and capsys.readouterr().out
    assert cli("events", "--since", "2999-01-01T00:00") == 0 and capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ("events", "--since", "yesterday-ish"),
        ("events", "--since", "9" * 500),
        ("events", "--limit", "100000000"),
        ("events", "--interval", "-1"),
        ("events", "--account", "../../etc/passwd"),
        ("events", "--account", "a" * 5000),
        ("accounts", "remove", "acme/alice/nothing"),
        ("accounts", "disable", "x/y"),
        ("audit", "--since", "\x00"),
    ],
)
def test_hostile_arguments_are_clear_errors(runtime_sync, cli, capsys, argv):
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("grantkeeper: ") and "Traceback" not in err


async def test_events_follow_prints_a_refresh_that_happens_while_it_runs(runtime, settings, slack_sim, env):
    account = seed_account(settings, runtime.vault, "slack", slack_sim.issue_grant(), provider_account_id=SLACK_ALICE)
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "events", "--follow", "--interval", "0.1"],
        cwd=str(ROOT),
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[tuple[str, str]] = queue.Queue()
    for name, stream in (("out", process.stdout), ("err", process.stderr)):
        threading.Thread(target=lambda n=name, s=stream: [lines.put((n, line)) for line in s], daemon=True).start()

    def wait_for(text: str, deadline: float) -> list[str]:
        seen = []
        while True:
            _stream, line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            seen.append(line)
            if text in line:
                return seen

    try:
        wait_for("following new events", time.monotonic() + 60)  # it now reads from here on
        version = runtime.vault.credentials.read(account.id).version
        await runtime.tokens.refresh(account, version, trigger="manual")
        seen = wait_for("refresh_succeeded", time.monotonic() + 60)
    finally:
        process.terminate()
        process.wait(timeout=30)
    [line] = [line for line in seen if "refresh_succeeded" in line]
    assert "acme/alice/slack" in line and "trigger=manual" in line
