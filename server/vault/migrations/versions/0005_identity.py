"""Verified identity: browser sessions, sign-ins in progress, the MCP authorization server's clients,
authorization requests, grants and tokens (all secrets as hashes), and who issued each magic link.

Revision ID: 0005_identity
Revises: 0004_webhooks
"""

import sqlalchemy as sa
from alembic import op

from server.vault.models import UTCDateTime

revision = "0005_identity"
down_revision = "0004_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("magic_link") as batch:
        batch.add_column(sa.Column("issued_by", sa.String(16)))
    op.create_table(
        "browser_session",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_index("ix_browser_session_session_hash", "browser_session", ["session_hash"], unique=True)
    op.create_table(
        "signin_flow",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
    )
    op.create_index("ix_signin_flow_state_hash", "signin_flow", ["state_hash"], unique=True)
    op.create_table(
        "mcp_client",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("client_metadata", sa.JSON, nullable=False),
        sa.Column("secret_key_id", sa.String(64)),
        sa.Column("secret_ciphertext", sa.LargeBinary),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "mcp_authorization",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(64)),
        sa.Column("client_id", sa.String(2048), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("org", sa.String(200)),
        sa.Column("user", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime()),
        sa.Column("used_at", UTCDateTime()),
    )
    op.create_index("ix_mcp_authorization_request_hash", "mcp_authorization", ["request_hash"], unique=True)
    op.create_index("ix_mcp_authorization_code_hash", "mcp_authorization", ["code_hash"], unique=True)
    op.create_table(
        "mcp_grant",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("client_id", sa.String(2048), nullable=False),
        sa.Column("client_name", sa.String(200)),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("scopes", sa.String(2000), nullable=False),
        sa.Column("resource", sa.String(2048)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("revoked_reason", sa.String(64)),
    )
    op.create_table(
        "mcp_token",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("grant_id", sa.String(32), sa.ForeignKey("mcp_grant.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
    )
    op.create_index("ix_mcp_token_grant_id", "mcp_token", ["grant_id"])


def downgrade() -> None:
    for table in ("mcp_token", "mcp_grant", "mcp_authorization", "mcp_client", "signin_flow", "browser_session"):
        op.drop_table(table)
    with op.batch_alter_table("magic_link") as batch:
        batch.drop_column("issued_by")
