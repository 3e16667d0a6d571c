"""single sign-on: an account's OpenID Connect identity; a role may be missing (until granted)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ROLE = sa.Enum("admin", "national", "referent", name="role", native_enum=False, length=20)


def upgrade() -> None:
    # On SQLite the table is rebuilt (a column's NOT NULL cannot be dropped in place): env.py
    # turns foreign keys off meanwhile, so the accounts' départements and tokens stay.
    with op.batch_alter_table("users") as batch:
        batch.alter_column("role", existing_type=ROLE, nullable=True)
        batch.add_column(sa.Column("oidc_issuer", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
    op.create_index("ix_users_oidc_identity", "users", ["oidc_issuer", "oidc_subject"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_users_oidc_identity", table_name="users")
    # Accounts still waiting for a role cannot be kept without one: they are removed (they can
    # log in again by single sign-on once the upgrade is back).
    op.execute("DELETE FROM users WHERE role IS NULL")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("oidc_subject")
        batch.drop_column("oidc_issuer")
        batch.alter_column("role", existing_type=ROLE, nullable=False)
