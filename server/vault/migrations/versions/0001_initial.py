"""Initial vault schema: accounts, credentials, magic links, API keys, lifecycle events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from server.vault.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connected_account",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.String(64)),
        sa.Column("provider_account_id", sa.String(200)),
        sa.Column("provider_identity", sa.JSON, nullable=False),
        sa.Column("scopes", sa.String(2000), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("org", "user", "connector", "label", name="uq_account_identity"),
    )
    op.create_table(
        "credential",
        sa.Column("account_id", sa.String(32), sa.ForeignKey("connected_account.id"), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("token_type", sa.String(32), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("access_expires_at", UTCDateTime()),
        sa.Column("refresh_due_at", UTCDateTime()),
        sa.Column("refresh_expires_at", UTCDateTime()),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("last_refresh_at", UTCDateTime()),
        sa.Column("last_refresh_outcome", sa.String(32)),
    )
    op.create_index("ix_credential_refresh_due_at", "credential", ["refresh_due_at"])
    op.create_table(
        "magic_link",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(32), sa.ForeignKey("connected_account.id"), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
        sa.Column("flow_state_hash", sa.String(64)),
        sa.Column("flow_key_id", sa.String(64)),
        sa.Column("flow_ciphertext", sa.LargeBinary),
        sa.Column("completed_at", UTCDateTime()),
    )
    op.create_index("ix_magic_link_token_hash", "magic_link", ["token_hash"], unique=True)
    op.create_index("ix_magic_link_account_id", "magic_link", ["account_id"])
    op.create_index("ix_magic_link_flow_state_hash", "magic_link", ["flow_state_hash"], unique=True)
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("description", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_index("ix_api_key_key_hash", "api_key", ["key_hash"], unique=True)
    op.create_table(
        "lifecycle_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("account_id", sa.String(32)),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_lifecycle_event_at", "lifecycle_event", ["at"])
    op.create_index("ix_lifecycle_event_kind", "lifecycle_event", ["kind"])
    op.create_index("ix_lifecycle_event_account_at", "lifecycle_event", ["account_id", "at"])


def downgrade() -> None:
    for table in ("lifecycle_event", "api_key", "magic_link", "credential", "connected_account"):
        op.drop_table(table)
