"""Pruning the identity tables, beside the magic links (server/housekeeping.py): sign-ins and authorization
requests that expired, browser sessions and MCP tokens past their lifetime plus the retention. A spent refresh
token is kept until it would have expired, so that presenting it again is still recognised as reuse."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from server.identity.models import BrowserSession, McpAuthorization, McpToken, SignInFlow


def prune_identity_rows(engine: Engine, *, now: datetime, retention: timedelta) -> int:
    cutoff = now - retention
    statements = [
        delete(SignInFlow).where(col(SignInFlow.expires_at) <= now),
        delete(McpAuthorization).where(col(McpAuthorization.expires_at) <= now),
        delete(McpToken).where(col(McpToken.expires_at) <= cutoff),
        delete(BrowserSession).where(or_(col(BrowserSession.expires_at) <= cutoff, col(BrowserSession.revoked_at) <= cutoff)),
    ]
    with Session(engine) as session:
        pruned = sum(session.exec(statement).rowcount for statement in statements)
        session.commit()
    return pruned
