"""accounts, roles and the audit log; a version on départements for optimistic locking

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 07:30:00
"""

from alembic import op
import sqlalchemy as sa

import core.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("role", sa.Enum("admin", "national", "referent", name="role",
                                  native_enum=False, length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "user_departements",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_user_departements_user_id_users")),
        sa.ForeignKeyConstraint(["departement_code"], ["departements.code"], ondelete="CASCADE",
                                name=op.f("fk_user_departements_departement_code_departements")),
        sa.PrimaryKeyConstraint("user_id", "departement_code", name=op.f("pk_user_departements")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("departement_code", sa.String(length=3), nullable=True),
        sa.Column("entity", sa.String(length=40), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["actor_user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_audit_log_actor_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_departement_at", "audit_log", ["departement_code", "at"])
    with op.batch_alter_table("departements") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("departements") as batch:
        batch.drop_column("version")
    op.drop_index("ix_audit_log_departement_at", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("user_departements")
    op.drop_table("users")
