"""tickets: tickets and their events, yearly number counters, incidents, email templates

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:00:00
"""

from alembic import op
import sqlalchemy as sa

import core.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: One voicemail ticket and one callback ticket per call.
ONE_PER_CALL = "call_id IS NOT NULL AND kind IN ('voicemail', 'callback')"


def _enum(name: str, *members: str) -> sa.Enum:
    return sa.Enum(*members, name=name, native_enum=False, length=30)


def upgrade() -> None:
    op.create_table(
        "email_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_email_templates_name")),
    )
    op.create_table(
        "ticket_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_ticket_counters")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("message_until", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column("closed_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["departement_code"], ["departements.code"], ondelete="CASCADE",
                                name=op.f("fk_incidents_departement_code_departements")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_departement_code"), "incidents", ["departement_code"])
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("kind", _enum("ticketkind", "voicemail", "callback", "referent", "incident"),
                  nullable=False),
        sa.Column("status", _enum("ticketstatus", "new", "in_progress", "waiting", "resolved",
                                  "closed"), nullable=False),
        sa.Column("closure_status", _enum("closurestatus", "by_referent", "by_national",
                                          "confirmed", "delay_exceeded"), nullable=True),
        sa.Column("departement_code", sa.String(length=3), nullable=True),
        sa.Column("national", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column("solicitation_id", sa.Integer(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("requester_email", sa.String(length=254), nullable=True),
        sa.Column("callback_number", sa.String(length=32), nullable=True),
        sa.Column("caller_masked", sa.String(length=32), nullable=False),
        sa.Column("recording_seconds", sa.Integer(), nullable=True),
        sa.Column("assigned_to_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("taken_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assigned_to_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_tickets_assigned_to_id_users")),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="SET NULL",
                                name=op.f("fk_tickets_call_id_calls")),
        sa.ForeignKeyConstraint(["departement_code"], ["departements.code"],
                                name=op.f("fk_tickets_departement_code_departements")),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="SET NULL",
                                name=op.f("fk_tickets_incident_id_incidents")),
        sa.ForeignKeyConstraint(["solicitation_id"], ["solicitations.id"], ondelete="SET NULL",
                                name=op.f("fk_tickets_solicitation_id_solicitations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("number", name=op.f("uq_tickets_number")),
    )
    op.create_index(op.f("ix_tickets_assigned_to_id"), "tickets", ["assigned_to_id"])
    op.create_index(op.f("ix_tickets_incident_id"), "tickets", ["incident_id"])
    op.create_index(op.f("ix_tickets_solicitation_id"), "tickets", ["solicitation_id"])
    op.create_index("ix_tickets_departement_status_created", "tickets",
                    ["departement_code", "status", "created_at"])
    op.create_index("ix_tickets_national_status_created", "tickets",
                    ["national", "status", "created_at"])
    op.create_index("ix_tickets_due_at", "tickets", ["due_at"])
    op.create_index("uq_tickets_call_kind", "tickets", ["call_id", "kind"], unique=True,
                    sqlite_where=sa.text(ONE_PER_CALL), postgresql_where=sa.text(ONE_PER_CALL))
    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["actor_user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_ticket_events_actor_user_id_users")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE",
                                name=op.f("fk_ticket_events_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_events")),
    )
    op.create_index(op.f("ix_ticket_events_ticket_id"), "ticket_events", ["ticket_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ticket_events_ticket_id"), table_name="ticket_events")
    op.drop_table("ticket_events")
    for name in ("uq_tickets_call_kind", "ix_tickets_due_at", "ix_tickets_national_status_created",
                 "ix_tickets_departement_status_created", op.f("ix_tickets_solicitation_id"),
                 op.f("ix_tickets_incident_id"), op.f("ix_tickets_assigned_to_id")):
        op.drop_index(name, table_name="tickets")
    op.drop_table("tickets")
    op.drop_index(op.f("ix_incidents_departement_code"), table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("ticket_counters")
    op.drop_table("email_templates")
