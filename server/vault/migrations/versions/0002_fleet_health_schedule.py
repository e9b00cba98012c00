"""Fleet mode: when each account's next health check is due, and when it last had one.

`health_due_at` is claimed the way refreshes are (the due rows, oldest first, through an index on
(status, health_due_at)), so N workers share the checks instead of each probing every account.

Revision ID: 0002_fleet
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from server.vault.models import UTCDateTime

revision = "0002_fleet"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connected_account") as batch:
        batch.add_column(sa.Column("health_due_at", UTCDateTime()))
        batch.add_column(sa.Column("health_checked_at", UTCDateTime()))
    # Existing accounts are checked on the first pass of the first worker that runs this version.
    op.execute("UPDATE connected_account SET health_due_at = created_at")
    op.create_index("ix_connected_account_status_health_due", "connected_account", ["status", "health_due_at"])


def downgrade() -> None:
    op.drop_index("ix_connected_account_status_health_due", "connected_account")
    with op.batch_alter_table("connected_account") as batch:
        batch.drop_column("health_checked_at")
        batch.drop_column("health_due_at")
