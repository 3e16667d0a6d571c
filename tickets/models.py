"""Tickets: voicemails, callback requests, referents' decisions and technical incidents that need
a follow-up, with their append-only history, the incidents they belong to, and the admins'
versions of the notification emails."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (JSON, Boolean, Enum, ForeignKey, Index, Integer, String, Text)
from sqlalchemy import false as sa_false
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from core.db import Base, UTCDateTime, utcnow
from tracking.models import Call, Solicitation


class TicketKind(enum.Enum):
    """Where a ticket comes from; the value is the French label shown to people."""

    voicemail = "message vocal"
    callback = "demande de rappel"
    referent = "demande suivie par un référent"
    incident = "incident technique"


class TicketStatus(enum.Enum):
    """Where a ticket stands in its workflow (see tickets/operations.py, TRANSITIONS)."""

    new = "nouveau"
    in_progress = "en cours"
    waiting = "en attente"
    resolved = "résolu"
    closed = "clos"


class ClosureStatus(enum.Enum):
    """How a ticket was closed."""

    by_referent = "clos par le référent"
    by_national = "clos par l'équipe nationale"
    confirmed = "confirmé par le demandeur"
    delay_exceeded = "délai dépassé"


#: Statuses of a ticket still to be dealt with.
OPEN_STATUSES = (TicketStatus.new, TicketStatus.in_progress, TicketStatus.waiting)


def _enum(cls):
    # The member name is stored (stable); the French value is shown.
    return Enum(cls, native_enum=False, length=30, validate_strings=True)


class TicketCounter(Base):
    """The last ticket number given in a year: "T-2026-000042" is the 42nd of 2026.

    Incremented by an UPDATE, which locks the row until the creating transaction ends, so that
    two creations at once never get the same number."""

    __tablename__ = "ticket_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Incident(Base):
    """A failure that makes many people call: tickets are linked to it, and the national team
    may have the phone menu announce a message before routing, until an expiry."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    #: The département concerned; NULL: every département.
    departement_code: Mapped[str | None] = mapped_column(
        ForeignKey("departements.code", ondelete="CASCADE"), index=True)
    #: Announced by the phone menu before routing (NULL: nothing announced).
    message: Mapped[str | None] = mapped_column(Text)
    #: When the message stops being announced (UTC); NULL: until it is cleared.
    message_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who opened it (`audit.operations.Actor.label`).
    created_by: Mapped[str] = mapped_column(String(300), default="")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tickets: Mapped[list[Ticket]] = relationship(back_populates="incident",
                                                 order_by="Ticket.id")


class Ticket(Base):
    """A request that needs a follow-up, numbered for people ("T-2026-000042")."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[TicketKind] = mapped_column(_enum(TicketKind))
    status: Mapped[TicketStatus] = mapped_column(_enum(TicketStatus), default=TicketStatus.new)
    closure_status: Mapped[ClosureStatus | None] = mapped_column(_enum(ClosureStatus))
    #: NULL: a national matter (an incident that concerns no département in particular).
    departement_code: Mapped[str | None] = mapped_column(ForeignKey("departements.code"))
    #: Handled by the national team: escalated by a referent, or a technical incident.
    national: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: The call it comes from (one voicemail ticket and one callback ticket per call at most).
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    #: The « historique des sollicitations » row that follows the ticket (escalated, resolved).
    solicitation_id: Mapped[int | None] = mapped_column(
        ForeignKey("solicitations.id", ondelete="SET NULL"), index=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    #: Who to send the acknowledgement and the closure to, when known.
    requester_email: Mapped[str | None] = mapped_column(String(254))
    #: Number to call back, E.164, in clear: personal data, erased with the callers' data.
    callback_number: Mapped[str | None] = mapped_column(String(32))
    #: The caller's masked number ("+336••••••78", "masqué"), for display.
    caller_masked: Mapped[str] = mapped_column(String(32), default="")
    recording_seconds: Mapped[int | None] = mapped_column(Integer)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                       index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Deadline to take it into account: one working hour of the département (tickets/sla.py).
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: First moved to « en cours »: taken into account (the deadline is met if before due_at).
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    call: Mapped[Call | None] = relationship()
    solicitation: Mapped[Solicitation | None] = relationship()
    incident: Mapped[Incident | None] = relationship(back_populates="tickets")
    assigned_to: Mapped[User | None] = relationship()
    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id", cascade="all, delete-orphan")

    __table_args__ = (
        # One voicemail ticket and one callback ticket per call: creations are idempotent.
        Index("uq_tickets_call_kind", "call_id", "kind", unique=True,
              sqlite_where=sql("call_id IS NOT NULL AND kind IN ('voicemail', 'callback')"),
              postgresql_where=sql("call_id IS NOT NULL AND kind IN ('voicemail', 'callback')")),
        # Lists: a département's tickets by status, newest first.
        Index("ix_tickets_departement_status_created", "departement_code", "status", "created_at"),
        # The national team's list.
        Index("ix_tickets_national_status_created", "national", "status", "created_at"),
        # Late tickets: deadline passed, not taken.
        Index("ix_tickets_due_at", "due_at"),
    )

    @property
    def is_open(self) -> bool:
        """Still to be dealt with (new, in progress or waiting)."""
        return self.status in OPEN_STATUSES

    def is_late(self, now: datetime) -> bool:
        """Not taken into account by its deadline."""
        return (self.due_at is not None and self.taken_at is None and self.due_at < now
                and self.status in OPEN_STATUSES)


class TicketEvent(Base):
    """One action on a ticket, nominative and timestamped. Append-only: a comment is an event,
    never edited or deleted."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"),
                                           index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who (`audit.operations.Actor.label`: "utilisateur:<email>", "système:<job>"…).
    actor: Mapped[str] = mapped_column(String(300))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: "created", "assigned", "status", "comment", "escalated", "email", "closed", "incident".
    kind: Mapped[str] = mapped_column(String(20))
    #: A French sentence for people (the comment itself for a comment).
    text: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class EmailTemplate(Base):
    """An admin's version of a notification email (defaults: tickets/emails.yaml)."""

    __tablename__ = "email_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The template's name, a key of tickets/emails.yaml.
    name: Mapped[str] = mapped_column(String(60), unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
