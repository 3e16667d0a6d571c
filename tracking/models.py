"""What happened on every call: one Call per CallSid, one CallLeg per dialled line, events."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
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
    #: "+336••••••78" or "masqué", for display (at most 16 characters: see core.privacy).
    caller_masked: Mapped[str] = mapped_column(String(32))
    #: Number dialled by the caller (the national number; a SIP address is cut to the column).
    called_number: Mapped[str] = mapped_column(String(64), default="")
    #: Twilio status: ringing → in-progress → completed (or busy, failed, no-answer, canceled).
    status: Mapped[str] = mapped_column(String(20), default="in-progress")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Total call length reported by Twilio at completion.
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    departement_code: Mapped[str | None] = mapped_column(ForeignKey("departements.code"))
    #: Key of the thématique chosen in the call flow's menu (tracking/motifs.yaml).
    thematique: Mapped[str | None] = mapped_column(String(60))
    #: A test call placed by the browser simulator: kept for its transcript, never counted
    #: (no solicitation row, so no workbook or indicator sees it).
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome))
    #: True when nobody stated the outcome: inferred at hang-up from how far the call went,
    #: and replaced by any outcome the flow states, whenever its webhook arrives.
    outcome_inferred: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: outside_hours | holiday | closure, when the outcome is out_of_hours.
    closed_reason: Mapped[str | None] = mapped_column(String(20))
    #: Last flow step reached: tells an abandon in the menu from a hang-up while ringing.
    step: Mapped[str | None] = mapped_column(String(40))
    #: When the webhook that set `step` was received: an older or post-hang-up one cannot move it.
    step_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Seconds from the first ring of a line to the answer (or to giving up).
    wait_seconds: Mapped[int | None] = mapped_column(Integer)
    #: Seconds talking with the referent.
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    answered_number: Mapped[str | None] = mapped_column(String(32))
    dial_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the last <Dial> reported its result: the end of the wait when nobody answered.
    dial_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recording_url: Mapped[str | None] = mapped_column(String(300))
    recording_seconds: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    legs: Mapped[list[CallLeg]] = relationship(back_populates="call", order_by="CallLeg.id",
                                               cascade="all, delete-orphan")

    __table_args__ = (
        # Returning caller: last call of this caller with a département, newest first.
        Index("ix_calls_caller_hash_started_at", "caller_hash", "started_at"),
        # Volumes per département and period (workbooks, KPIs). It also holds every column the
        # dashboard's figures read (tracking/indicators.py), so that they are summed from the
        # index alone, never from the table row by row.
        Index("ix_calls_departement_started_at_covering", "departement_code", "started_at",
              "test", "outcome", "wait_seconds", "talk_seconds"),
    )


class CallLeg(Base):
    """One outbound leg to a referent line, created by <Dial>."""

    __tablename__ = "call_legs"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    #: Child CallSid; unique so that repeated callbacks land on the same row.
    leg_sid: Mapped[str] = mapped_column(String(64), unique=True)
    number: Mapped[str] = mapped_column(String(32))
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


class UnmatchedCallback(Base):
    """A callback for a CallSid with no call yet: kept apart, never counted.

    Twilio only calls back for calls the service answered, so such a callback either belongs to
    a call whose first webhook is still in a journal (the database was unavailable), or it is
    bogus. It is applied when the call appears, and erased with the callers' data otherwise.
    """

    __tablename__ = "unmatched_callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    #: The tracking record's kind ("status", "leg_status", "whisper", "whisper_result").
    kind: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The record as delivered (numbers already masked).
    payload: Mapped[dict] = mapped_column(JSON, default=dict)


class JournalReplay(Base):
    """A journal entry already applied: a replay interrupted after its commit skips it."""

    __tablename__ = "journal_replays"

    #: The entry's random id (hex).
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Channel(enum.Enum):
    """How a solicitation reached the assistance."""

    phone_svi = "Téléphone (SVI)"
    phone_direct = "Téléphone (hors SVI)"
    email = "Courriel"
    form = "Formulaire"
    other = "Autre"


class Source(enum.Enum):
    """Who created a solicitation row."""

    svi = "créée par le SVI"
    manual = "saisie par un référent"
    workbook = "importée d'un classeur"


class Thematique(Base):
    """Top level of the motif taxonomy (e.g. « Assistance technique »)."""

    __tablename__ = "thematiques"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable key: rows, the call flow's menu and files refer to it; never renamed.
    key: Mapped[str] = mapped_column(String(40), unique=True)
    #: French label shown everywhere; renaming it relabels history, which stays readable.
    label: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    #: Retired entries stay for history but are no longer offered.
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    motifs: Mapped[list[Motif]] = relationship(back_populates="thematique", order_by="Motif.position")


class Motif(Base):
    """Second level of the taxonomy, within a thématique."""

    __tablename__ = "motifs"

    id: Mapped[int] = mapped_column(primary_key=True)
    thematique_id: Mapped[int] = mapped_column(ForeignKey("thematiques.id"), index=True)
    key: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    thematique: Mapped[Thematique] = relationship(back_populates="motifs")
    sous_motifs: Mapped[list[SousMotif]] = relationship(back_populates="motif", order_by="SousMotif.position")

    __table_args__ = (UniqueConstraint("thematique_id", "key"),)


class SousMotif(Base):
    """Third level of the taxonomy, within a motif."""

    __tablename__ = "sous_motifs"

    id: Mapped[int] = mapped_column(primary_key=True)
    motif_id: Mapped[int] = mapped_column(ForeignKey("motifs.id"), index=True)
    key: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    motif: Mapped[Motif] = relationship(back_populates="sous_motifs")

    __table_args__ = (UniqueConstraint("motif_id", "key"),)


class Solicitation(Base):
    """One row of the « historique des sollicitations »: one motif of one call or email."""

    __tablename__ = "solicitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable reference printed in workbooks ("S-…"), so that a re-import recognises the row.
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    departement_code: Mapped[str] = mapped_column(ForeignKey("departements.code"))
    #: When it happened (UTC); workbooks show the département's local time.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    #: The SVI call this row qualifies (several rows when a call is split into motifs).
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"), index=True)
    #: First row of its call: volumes count calls once however many motifs they have.
    is_primary: Mapped[bool] = mapped_column(Boolean, default=True)
    #: NULL while « À qualifier ».
    thematique_id: Mapped[int | None] = mapped_column(ForeignKey("thematiques.id"))
    motif_id: Mapped[int | None] = mapped_column(ForeignKey("motifs.id"))
    sous_motif_id: Mapped[int | None] = mapped_column(ForeignKey("sous_motifs.id"))
    comment: Mapped[str] = mapped_column(Text, default="")
    #: Resolved at the first level (by the référent), None while unknown.
    resolved_first_level: Mapped[bool | None] = mapped_column(Boolean)
    #: Escalated to the national assistance (level 2).
    escalated: Mapped[bool | None] = mapped_column(Boolean)
    source: Mapped[Source] = mapped_column(_enum(Source))
    #: Content fingerprint of a row added by hand in a workbook: importing it twice adds it once.
    fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    call: Mapped[Call | None] = relationship()
    thematique: Mapped[Thematique | None] = relationship()
    motif: Mapped[Motif | None] = relationship()
    sous_motif: Mapped[SousMotif | None] = relationship()

    __table_args__ = (
        # Workbooks: a département's rows over a period, in date order; « Mes appels » of a
        # referent. With the columns the dashboard counts by (top thématiques and motifs) and
        # « À qualifier » filters on, read from the index alone.
        Index("ix_solicitations_departement_occurred_at_covering", "departement_code",
              "occurred_at", "thematique_id", "motif_id"),
        # National workbook: every row over a period.
        Index("ix_solicitations_occurred_at", "occurred_at"),
    )
