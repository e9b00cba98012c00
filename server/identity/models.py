"""The identity tables: signed-in browser sessions, sign-ins in progress, and the MCP authorization server's
clients, authorization requests, grants (an MCP client session) and tokens. Every secret is stored as a hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary
from sqlmodel import Field, SQLModel

from server.vault.models import _ts, new_id, utcnow


class BrowserSession(SQLModel, table=True):
    """A person signed in through OIDC. The cookie holds the session id; only its SHA-256 is stored."""

    __tablename__ = "browser_session"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    session_hash: str = Field(unique=True, index=True, max_length=64)
    org: str = Field(max_length=200)
    user: str = Field(max_length=200)
    subject: str = Field(max_length=255)  # the IdP's `sub`
    email: str | None = Field(default=None, max_length=320)
    is_admin: bool = Field(default=False)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    last_seen_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False)  # the absolute lifetime
    revoked_at: datetime | None = _ts(nullable=True)


class SignInFlow(SQLModel, table=True):
    """An OIDC sign-in between /login and the callback: nonce, PKCE verifier and where to go next, sealed."""

    __tablename__ = "signin_flow"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    state_hash: str = Field(unique=True, index=True, max_length=64)
    key_id: str = Field(max_length=64)
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False)
    used_at: datetime | None = _ts(nullable=True)
    client_address: str | None = Field(default=None, index=True, max_length=64)  # who started it (the per-address cap)


class McpClient(SQLModel, table=True):
    """A client registered by RFC 7591 dynamic registration. CIMD clients are not stored: their metadata
    document is fetched (and cached in memory) by URL."""

    __tablename__ = "mcp_client"

    client_id: str = Field(primary_key=True, max_length=64)
    client_metadata: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secret_key_id: str | None = Field(default=None, max_length=64)
    secret_ciphertext: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _ts(nullable=False, default=utcnow)


class McpAuthorization(SQLModel, table=True):
    """One /authorize request: waiting for sign-in and consent, then a single-use code."""

    __tablename__ = "mcp_authorization"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    request_hash: str = Field(unique=True, index=True, max_length=64)
    code_hash: str | None = Field(default=None, unique=True, index=True, max_length=64)
    client_id: str = Field(max_length=2048)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    org: str | None = Field(default=None, max_length=200)
    user: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False)
    decided_at: datetime | None = _ts(nullable=True)
    used_at: datetime | None = _ts(nullable=True)


class McpGrant(SQLModel, table=True):
    """An MCP client session: one client acting for one person, from consent until revoked."""

    __tablename__ = "mcp_grant"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    client_id: str = Field(max_length=2048)
    client_name: str | None = Field(default=None, max_length=200)
    org: str = Field(max_length=200)
    user: str = Field(max_length=200)
    scopes: str = Field(default="", max_length=2000)
    resource: str | None = Field(default=None, max_length=2048)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    last_used_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)
    revoked_reason: str | None = Field(default=None, max_length=64)


class McpToken(SQLModel, table=True):
    """An access or refresh token of a grant, by hash. A refresh token is spent (`used_at`) when rotated."""

    __tablename__ = "mcp_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    grant_id: str = Field(foreign_key="mcp_grant.id", index=True, max_length=32)
    kind: str = Field(max_length=16)  # access | refresh
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False)
    used_at: datetime | None = _ts(nullable=True)
