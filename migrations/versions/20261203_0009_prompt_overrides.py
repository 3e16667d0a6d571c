"""prompt overrides: admins' texts and recordings, nationally or per département

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00
"""

from alembic import op
import sqlalchemy as sa

import core.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("audio", sa.String(length=40), nullable=True),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["departement_code"], ["departements.code"], ondelete="CASCADE",
                                name=op.f("fk_prompt_overrides_departement_code_departements")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_overrides")),
        sa.UniqueConstraint("name", "departement_code", name=op.f("uq_prompt_overrides_name")),
    )
    op.create_index("uq_prompt_overrides_national", "prompt_overrides", ["name"], unique=True,
                    sqlite_where=sa.text("departement_code IS NULL"),
                    postgresql_where=sa.text("departement_code IS NULL"))


def downgrade() -> None:
    # Recordings stay under instance/prompts/: files are not the migration's to delete.
    op.drop_index("uq_prompt_overrides_national", table_name="prompt_overrides")
    op.drop_table("prompt_overrides")
