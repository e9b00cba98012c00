"""Pruning the identity tables, beside the magic links (server/housekeeping.py): sign-ins and authorization
requests that expired, browser sessions and MCP tokens past their lifetime plus the retention, and dynamically
registered clients nobody can use any more. A spent refresh token is kept until it would have expired, so that
presenting it again is still recognised as reuse."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Delete, delete, func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from server.identity.models import BrowserSession, McpAuthorization, McpClient, McpGrant, McpToken, SignInFlow


def prune_identity_rows(engine: Engine, *, now: datetime, retention: timedelta, client_retention: timedelta) -> int:
    cutoff = now - retention
    statements = [
        delete(SignInFlow).where(col(SignInFlow.expires_at) <= now),
        delete(McpAuthorization).where(col(McpAuthorization.expires_at) <= now),
        delete(McpToken).where(col(McpToken.expires_at) <= cutoff),
        delete(BrowserSession).where(or_(col(BrowserSession.expires_at) <= cutoff, col(BrowserSession.revoked_at) <= cutoff)),
        _unused_clients(now, now - client_retention),
    ]
    with Session(engine) as session:
        pruned = sum(session.exec(statement).rowcount for statement in statements)
        session.commit()
    return pruned


def _unused_clients(now: datetime, cutoff: datetime) -> Delete:
    """Dynamically registered clients (anyone may register one) that can do nothing more and were last seen before
    `cutoff`: registered then, no grant with a token still valid, no grant used and no /authorize since. A client
    in the middle of a sign-in, or holding a refresh token, is kept however old its registration."""
    live_grant = (
        select(McpGrant.id)
        .join(McpToken, col(McpToken.grant_id) == col(McpGrant.id))
        .where(
            col(McpGrant.client_id) == col(McpClient.client_id),
            col(McpGrant.revoked_at).is_(None),
            col(McpToken.expires_at) > now,
        )
    )
    recent_grant = select(McpGrant.id).where(
        col(McpGrant.client_id) == col(McpClient.client_id),
        func.coalesce(col(McpGrant.last_used_at), col(McpGrant.created_at)) > cutoff,
    )
    recent_request = select(McpAuthorization.id).where(
        col(McpAuthorization.client_id) == col(McpClient.client_id), col(McpAuthorization.created_at) > cutoff
    )
    return delete(McpClient).where(
        col(McpClient.created_at) <= cutoff, ~live_grant.exists(), ~recent_grant.exists(), ~recent_request.exists()
    )
