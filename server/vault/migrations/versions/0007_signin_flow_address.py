"""Sign-ins in progress remember the address that started them, so /login can cap the live ones per address.

Revision ID: 0007_signin_flow_address
Revises: 0006_console
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_signin_flow_address"
down_revision = "0006_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signin_flow") as batch:
        batch.add_column(sa.Column("client_address", sa.String(64), nullable=True))
        batch.create_index("ix_signin_flow_client_address", ["client_address"])


def downgrade() -> None:
    with op.batch_alter_table("signin_flow") as batch:
        batch.drop_index("ix_signin_flow_client_address")
        batch.drop_column("client_address")
