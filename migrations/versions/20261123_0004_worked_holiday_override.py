"""a département may keep off a holiday worked nationally (worked_holidays.worked)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:30:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("worked_holidays") as batch:
        batch.add_column(sa.Column("worked", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade() -> None:
    # Rows that kept a day off mean nothing without the column: drop them first.
    op.execute("DELETE FROM worked_holidays WHERE NOT worked")
    with op.batch_alter_table("worked_holidays") as batch:
        batch.drop_column("worked")
