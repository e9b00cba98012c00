"""Open alert incidents, shared by every worker so an incident is alerted once per fleet, not once per process.

Revision ID: 0003_alerts
Revises: 0002_fleet
"""

import sqlalchemy as sa
from alembic import op

from server.vault.models import UTCDateTime

revision = "0003_alerts"
down_revision = "0002_fleet"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_incident",
        sa.Column("account", sa.String(400), primary_key=True),
        sa.Column("incident", sa.String(64), primary_key=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_incident")
