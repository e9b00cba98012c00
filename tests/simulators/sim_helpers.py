"""HTTP helpers shared by the simulator tests (plain functions, importable from any test module)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

REPO_ROOT = Path(__file__).resolve().parents[2]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refresh(
    client: httpx2.Client,
    provider: str,
    path: str,
    refresh_token: str,
    *,
    as_json: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """A refresh-token request the way each provider's clients send it (form or JSON, credentials in the body)."""
    body = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": f"sim-{provider}-client",
        "client_secret": f"sim-{provider}-secret",
    }
    return client.post(path, json=body, headers=headers) if as_json else client.post(path, data=body, headers=headers)


def slack_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return _refresh(client, "slack", "/api/oauth.v2.access", refresh_token)


def github_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return _refresh(client, "github", "/login/oauth/access_token", refresh_token, headers={"Accept": "application/json"})


def google_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return _refresh(client, "google", "/token", refresh_token)


def zendesk_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return _refresh(client, "zendesk", "/oauth/tokens", refresh_token, as_json=True)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def slack_history(client: httpx2.Client, token: str, **params: object) -> dict:
    return client.get("/api/conversations.history", params=params, headers=bearer(token)).json()


def slack_post(client: httpx2.Client, token: str, **fields: object) -> dict:
    return client.post("/api/chat.postMessage", json=fields, headers=bearer(token)).json()


def github_search(client: httpx2.Client, token: str, q: str, **params: object) -> httpx2.Response:
    return client.get("/search/issues", params={"q": q, **params}, headers=bearer(token))


@contextmanager
def simulators_from_the_command_line(*args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m simulators ARGS` until it says it is ready; yields the process and what it printed.
    The caller stops it (SIGTERM) and checks the exit; a process left running is killed."""
    command = [sys.executable, "-m", "simulators", *args, "--log-level", "warning"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=environment) as process:
        try:
            assert process.stdout is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                if line.startswith("Press Ctrl+C"):
                    break
            yield process, "".join(lines)
        finally:
            if process.poll() is None:
                process.kill()
