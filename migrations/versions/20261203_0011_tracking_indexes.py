"""tracking indexes: the dashboard's figures read from the index alone

The indexes on (département, instant) of calls and solicitations also hold the columns the
dashboard sums and counts by (tracking/indicators.py) and « Mes appels » filters on: the
186,000 calls of a national quarter are then read from the index, in order, instead of looked
up in the table one by one (bench/tracking.py, 1,000,000 calls on SQLite: the national
dashboard's statements took 2.0 s reading the table, 0.9 s reading the index; PostgreSQL
reads them with index-only scans). They replace the two-column indexes, which they extend.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 12:00:00
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

CALLS = ["departement_code", "started_at", "test", "outcome", "wait_seconds", "talk_seconds"]
SOLICITATIONS = ["departement_code", "occurred_at", "thematique_id", "motif_id"]


def upgrade() -> None:
    op.create_index("ix_calls_departement_started_at_covering", "calls", CALLS)
    op.drop_index("ix_calls_departement_started_at", table_name="calls")
    op.create_index("ix_solicitations_departement_occurred_at_covering", "solicitations",
                    SOLICITATIONS)
    op.drop_index("ix_solicitations_departement_occurred_at", table_name="solicitations")


def downgrade() -> None:
    op.create_index("ix_solicitations_departement_occurred_at", "solicitations",
                    ["departement_code", "occurred_at"])
    op.drop_index("ix_solicitations_departement_occurred_at_covering",
                  table_name="solicitations")
    op.create_index("ix_calls_departement_started_at", "calls", ["departement_code", "started_at"])
    op.drop_index("ix_calls_departement_started_at_covering", table_name="calls")
