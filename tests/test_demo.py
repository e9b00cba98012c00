"""The README's demo command runs end to end on a fresh vault and leaks no token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_the_whole_story_and_reports_no_plaintext(isolated_environment):
    done = subprocess.run([sys.executable, "-m", "server", "demo"], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "token endpoint hits = 2, reuse detections = 0" in out
    assert "Already existed: issue #1" in out and "Issues in acme/webshop: 1" in out
    assert "status=reauth_required" in out
    assert "grantkeeper's page: HTTP 200, reconnected" in out
    assert "github/default: active" in out and "slack/default: active" in out
    assert "no plaintext token" in out
    for prefix in ("xoxe.xoxb-1-", "xoxe-1-", "ghu_", "ghr_"):
        assert prefix not in out and prefix not in done.stderr
