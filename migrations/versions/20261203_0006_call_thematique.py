"""call thematique: calls.motif renamed thematique (it holds a thématique key, not a motif)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 06:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.alter_column("motif", new_column_name="thematique", existing_type=sa.String(60),
                           existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.alter_column("thematique", new_column_name="motif", existing_type=sa.String(60),
                           existing_nullable=True)
