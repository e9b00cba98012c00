"""HTTP helpers shared by the simulator tests (plain functions, importable from any test module)."""

from __future__ import annotations

import base64
import hashlib
import secrets

import httpx2


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def slack_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return client.post(
        "/api/oauth.v2.access",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "sim-slack-client",
            "client_secret": "sim-slack-secret",
        },
    )


def github_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return client.post(
        "/login/oauth/access_token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "sim-github-client",
            "client_secret": "sim-github-secret",
        },
        headers={"Accept": "application/json"},
    )


def google_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "sim-google-client",
            "client_secret": "sim-google-secret",
        },
    )


def zendesk_refresh(client: httpx2.Client, refresh_token: str) -> httpx2.Response:
    return client.post(
        "/oauth/tokens",
        json={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "sim-zendesk-client",
            "client_secret": "sim-zendesk-secret",
        },
    )


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
