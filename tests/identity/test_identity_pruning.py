"""Housekeeping prunes identity rows that can do nothing more, and keeps a spent refresh token until it would have
expired (so a replay is still recognised as reuse)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from server.housekeeping import Housekeeper
from server.identity.models import BrowserSession, McpAuthorization, McpClient, McpGrant, McpToken, SignInFlow
from server.vault.models import utcnow
from tests.support.databases import database_url_on_both as database_url  # noqa: F401 - fixture override

pytestmark = pytest.mark.no_sign_in


def test_spent_identity_rows_are_pruned_and_live_ones_kept(runtime_sync):
    vault, now = runtime_sync.vault, utcnow()
    retention = timedelta(seconds=runtime_sync.settings.magic_link_retention_seconds)
    old, later = now - retention - timedelta(hours=1), now + timedelta(hours=1)
    with Session(vault.engine) as session:
        session.add(McpGrant(id="g" * 32, client_id="c", org="acme", user="alice"))
        session.add_all(
            [
                SignInFlow(state_hash="a" * 64, key_id="k", ciphertext=b"x", expires_at=now - timedelta(seconds=1)),
                SignInFlow(state_hash="b" * 64, key_id="k", ciphertext=b"x", expires_at=later),
                McpAuthorization(request_hash="c" * 64, client_id="c", expires_at=now - timedelta(seconds=1)),
                McpAuthorization(request_hash="d" * 64, client_id="c", expires_at=later),
                McpToken(token_hash="e" * 64, grant_id="g" * 32, kind="access", expires_at=old),
                McpToken(token_hash="f" * 64, grant_id="g" * 32, kind="refresh", expires_at=later, used_at=now),
                BrowserSession(session_hash="1" * 64, org="acme", user="alice", subject="s", expires_at=old),
                BrowserSession(session_hash="2" * 64, org="acme", user="bob", subject="s", expires_at=later, revoked_at=old),
                BrowserSession(session_hash="3" * 64, org="acme", user="carol", subject="s", expires_at=later),
            ]
        )
        session.commit()

    pruned = Housekeeper(runtime_sync.settings, vault).prune_once()

    with Session(vault.engine) as session:
        assert [row.state_hash[0] for row in session.exec(select(SignInFlow))] == ["b"]
        assert [row.request_hash[0] for row in session.exec(select(McpAuthorization))] == ["d"]
        assert [row.token_hash[0] for row in session.exec(select(McpToken))] == ["f"]  # spent, not yet expired
        assert [row.user for row in session.exec(select(BrowserSession))] == ["carol"]
    assert pruned == 5


def client_ids(vault) -> list[str]:
    with Session(vault.engine) as session:
        return sorted(row.client_id for row in session.exec(select(McpClient)))


def test_registered_clients_nobody_can_use_are_pruned_after_their_retention(runtime_sync):
    vault, now = runtime_sync.vault, utcnow()
    retention = timedelta(days=runtime_sync.settings.mcp_client_retention_days)
    long_ago, lately, far = now - retention - timedelta(days=1), now - timedelta(days=1), now + 3 * retention
    with Session(vault.engine) as session:
        session.add_all(
            [
                McpClient(client_id="never-used", created_at=long_ago),
                McpClient(client_id="new", created_at=lately),
                McpClient(client_id="holds-a-refresh-token", created_at=long_ago),
                McpClient(client_id="revoked-long-ago", created_at=long_ago),
                McpClient(client_id="used-lately", created_at=long_ago),
                McpClient(client_id="signing-in", created_at=long_ago),
                McpGrant(id="h" * 32, client_id="holds-a-refresh-token", org="acme", user="a", created_at=long_ago),
                McpToken(token_hash="h" * 64, grant_id="h" * 32, kind="refresh", expires_at=far),
                McpGrant(
                    id="r" * 32, client_id="revoked-long-ago", org="acme", user="b", created_at=long_ago, revoked_at=long_ago
                ),
                McpToken(token_hash="r" * 64, grant_id="r" * 32, kind="refresh", expires_at=far),
                McpGrant(id="u" * 32, client_id="used-lately", org="acme", user="c", created_at=long_ago, last_used_at=lately),
                McpAuthorization(request_hash="s" * 64, client_id="signing-in", created_at=lately, expires_at=far),
            ]
        )
        session.commit()
    everyone = ["holds-a-refresh-token", "never-used", "new", "revoked-long-ago", "signing-in", "used-lately"]
    assert client_ids(vault) == everyone

    Housekeeper(runtime_sync.settings, vault, clock=lambda: now).prune_once()
    assert client_ids(vault) == ["holds-a-refresh-token", "new", "signing-in", "used-lately"]

    # A retention later, only the client whose person still holds a valid refresh token is left.
    Housekeeper(runtime_sync.settings, vault, clock=lambda: now + retention).prune_once()
    assert client_ids(vault) == ["holds-a-refresh-token"]
