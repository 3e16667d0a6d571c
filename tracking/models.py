"""What happened on every call: one Call per CallSid, one CallLeg per dialled line, events."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow


class Outcome(enum.Enum):
    """How a call ended for the caller; drives the KPIs."""

    answered = "décroché"
    out_of_hours = "hors horaires"  # includes public holidays and exceptional closures
    no_phone_assistance = "pas d'assistance téléphonique"
    abandoned = "abandon dans le menu"
    invalid_departement = "département invalide"
    no_answer = "personne n'a répondu"
    voicemail = "message vocal laissé"
    hung_up_ringing = "raccroché pendant la sonnerie"
    error = "erreur technique"


#: Twilio call statuses in lifecycle order; a callback never moves a call backwards.
STATUS_ORDER = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3, "answered": 3,
                "completed": 4, "busy": 4, "no-answer": 4, "failed": 4, "canceled": 4}
TERMINAL = {s for s, rank in STATUS_ORDER.items() if rank == 4}


def _enum(cls):
    return Enum(cls, native_enum=False, length=30, validate_strings=True)


class Call(Base):
    """One inbound call to the national number (one Twilio CallSid)."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Twilio CallSid ("CA…"); the idempotency key of every webhook and callback.
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    #: HMAC of the caller number (None when hidden): links a returning caller, reveals nothing.
    caller_hash: Mapped[str | None] = mapped_column(String(64))
    #: "+336••••••78" or "masqué", for display.
    caller_masked: Mapped[str] = mapped_column(String(32))
    #: Number dialled by the caller (the national number).
    called_number: Mapped[str] = mapped_column(String(32), default="")
    #: Twilio status: ringing → in-progress → completed (or busy, failed, no-answer, canceled).
    status: Mapped[str] = mapped_column(String(20), default="in-progress")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Total call length reported by Twilio at completion.
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    departement_code: Mapped[str | None] = mapped_column(ForeignKey("departements.code"))
    #: Thématique chosen in the motif menu (its key in the flow definition).
    motif: Mapped[str | None] = mapped_column(String(60))
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome))
    #: outside_hours | holiday | closure, when the outcome is out_of_hours.
    closed_reason: Mapped[str | None] = mapped_column(String(20))
    #: Last flow step reached: tells an abandon in the menu from a hang-up while ringing.
    step: Mapped[str | None] = mapped_column(String(40))
    #: Seconds from the first ring of a line to the answer (or to giving up).
    wait_seconds: Mapped[int | None] = mapped_column(Integer)
    #: Seconds talking with the referent.
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    answered_number: Mapped[str | None] = mapped_column(String(20))
    dial_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recording_url: Mapped[str | None] = mapped_column(String(300))
    recording_seconds: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    legs: Mapped[list[CallLeg]] = relationship(back_populates="call", order_by="CallLeg.id",
                                               cascade="all, delete-orphan")

    __table_args__ = (
        # Returning caller: last call of this caller with a département, newest first.
        Index("ix_calls_caller_hash_started_at", "caller_hash", "started_at"),
        # Volumes per département and period (workbooks, KPIs).
        Index("ix_calls_departement_started_at", "departement_code", "started_at"),
    )


class CallLeg(Base):
    """One outbound leg to a referent line, created by <Dial>."""

    __tablename__ = "call_legs"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    #: Child CallSid; unique so that repeated callbacks land on the same row.
    leg_sid: Mapped[str] = mapped_column(String(64), unique=True)
    number: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="initiated")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set when the referent pressed 1 on the whisper: the only proof a person answered.
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)

    call: Mapped[Call] = relationship(back_populates="legs")


class CallEvent(Base):
    """Every webhook and callback received for a call, as received (numbers masked)."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: "step", "status", "leg-status", "whisper", "recording", "error".
    kind: Mapped[str] = mapped_column(String(20))
    step: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
