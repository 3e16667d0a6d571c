"""hardening: wider number columns, inferred outcomes, dial end, unmatched callbacks, journal replays

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 21:45:00
"""

from alembic import op
import sqlalchemy as sa

import core.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.alter_column("called_number", type_=sa.String(64), existing_type=sa.String(32),
                           existing_nullable=False)
        batch.alter_column("answered_number", type_=sa.String(32), existing_type=sa.String(20),
                           existing_nullable=True)
        batch.add_column(sa.Column("outcome_inferred", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("dial_ended_at", core.db.UTCDateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("step_at", core.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("call_legs") as batch:
        batch.alter_column("number", type_=sa.String(32), existing_type=sa.String(20),
                           existing_nullable=False)
    # Outcomes stated at hang-up so far were all inferred.
    op.execute("UPDATE calls SET outcome_inferred = true WHERE outcome IN ('abandoned') "
               "OR (outcome = 'hung_up_ringing' AND step = 'dial')")
    op.create_table(
        "unmatched_callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("received_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unmatched_callbacks")))
    op.create_index(op.f("ix_unmatched_callbacks_call_sid"), "unmatched_callbacks", ["call_sid"])
    op.create_table(
        "journal_replays",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("applied_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_replays")))


def downgrade() -> None:
    op.drop_table("journal_replays")
    op.drop_index(op.f("ix_unmatched_callbacks_call_sid"), table_name="unmatched_callbacks")
    op.drop_table("unmatched_callbacks")
    with op.batch_alter_table("call_legs") as batch:
        batch.alter_column("number", type_=sa.String(20), existing_type=sa.String(32),
                           existing_nullable=False)
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("step_at")
        batch.drop_column("dial_ended_at")
        batch.drop_column("outcome_inferred")
        batch.alter_column("answered_number", type_=sa.String(20), existing_type=sa.String(32),
                           existing_nullable=True)
        batch.alter_column("called_number", type_=sa.String(32), existing_type=sa.String(64),
                           existing_nullable=False)
