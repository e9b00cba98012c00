"""The operator's console: administrator API keys, who removed an account and when, upstream revocations retried
from the database, and the audit trail.

Revision ID: 0006_console
Revises: 0005_identity
"""

import sqlalchemy as sa
from alembic import op

from server.vault.models import UTCDateTime

revision = "0006_console"
down_revision = "0005_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_key") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("connected_account") as batch:
        batch.add_column(sa.Column("removed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("removed_by", sa.String(200), nullable=True))
    op.create_table(
        "revocation",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(32), nullable=False, index=True),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True, index=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
        sa.Column("actor", sa.String(400), nullable=False, index=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=True),
        sa.Column("target", sa.String(400), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_event")
    op.drop_table("revocation")
    with op.batch_alter_table("connected_account") as batch:
        batch.drop_column("removed_by")
        batch.drop_column("removed_at")
    with op.batch_alter_table("api_key") as batch:
        batch.drop_column("admin")
