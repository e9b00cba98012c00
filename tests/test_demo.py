"""The README's first command: `grantkeeper demo --fast` runs the triage agent through the whole fault timeline
and proves, by counting at the simulators, that nothing was lost or done twice — and prints no token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_fast_files_every_report_once_through_expiry_faults_and_a_revocation(isolated_environment):
    done = subprocess.run(
        [sys.executable, "-m", "server", "demo", "--fast"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-3000:]
    assert "PASS: nothing lost, nothing done twice." in out

    filed = re.search(r"every bug report filed and answered: (\d+) reports → (\d+) issues, (\d+) thread replies", out)
    assert filed and int(filed[1]) >= 10 and filed[1] == filed[2] == filed[3], out[-3000:]
    assert "0 duplicate issues, 0 duplicate replies, though 2 write answer(s) were lost" in out
    assert "no grant lost: github active, slack active" in out
    assert re.search(r"revocation recovered through the link: 1 re-consent\(s\)", out)
    while_blocked = re.search(r"reports read while GitHub was disconnected: (\d+), filed after the reconnect", out)
    assert while_blocked and int(while_blocked[1]) >= 1
    assert "refresh-token reuse detected at the providers: 0" in out
    assert "tool calls that raised instead of answering: 0" in out
    assert "plaintext tokens in the vault file" in out and ": none" in out
    triggers = re.search(r"refreshes by trigger │ (.*?) *│", out)
    assert triggers and "reactive" in triggers[1], out[-3000:]
    for fault in (
        "kill every access token",
        "end the next token they issue at once",
        "429 burst",
        "fail 30 % of refreshes",
        "answer is lost",
        "Slack is down",
        "revoked at GitHub",
    ):
        assert fault in out
    for prefix in ("xoxe.xoxb-1-", "xoxe-1-", "ghu_", "ghr_"):
        assert prefix not in out and prefix not in done.stderr
