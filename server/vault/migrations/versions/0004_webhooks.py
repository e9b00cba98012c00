"""Webhook endpoints (sealed signing secrets) and the durable outbox their messages are delivered from.

Revision ID: 0004_webhooks
Revises: 0003_alerts
"""

import sqlalchemy as sa
from alembic import op

from server.vault.models import UTCDateTime

revision = "0004_webhooks"
down_revision = "0003_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "webhook_message",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(40), nullable=False, unique=True),
        sa.Column("endpoint_id", sa.String(32), sa.ForeignKey("webhook_endpoint.id"), nullable=False),
        sa.Column("order_key", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_webhook_message_status_next", "webhook_message", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_message_order", "webhook_message", ["endpoint_id", "order_key", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_message_order", "webhook_message")
    op.drop_index("ix_webhook_message_status_next", "webhook_message")
    op.drop_table("webhook_message")
    op.drop_table("webhook_endpoint")
