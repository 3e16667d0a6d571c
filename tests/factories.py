"""Factories: arrange the database in one line, through the same operations as the app.

Each one commits (requests under test use sessions of their own) and returns what it made.
Only the arguments a test is about need saying; everything else has a sensible default.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time

from audit.operations import Actor
from directory import operations
from directory.models import Departement, RingStrategy
from tracking import solicitations
from tracking.models import Call, CallEvent, Channel, Outcome, Solicitation, Source

#: Who the tests' changes are made by (audit log).
ACTOR = Actor("test:pytest")

_sids = itertools.count(1)
#: When arranged calls happen unless told: a Monday morning, open in Paris.
DEFAULT_AT = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)


def departement(db, code: str, *, lines: list[str] | None = None, strategy: str | None = None,
                ring_timeout: int | None = None, voicemail: bool | None = None,
                phone_assistance: bool | None = None, form_url: str | None = None,
                email: str | None = None) -> Departement:
    """Change a seeded département's settings (only those given), as an admin would."""
    dept = operations.get_departement(db, code)
    if lines is not None:
        operations.set_lines(db, dept, [(n, None) for n in lines])
    if strategy is not None:
        dept.ring_strategy = RingStrategy[strategy]
    if ring_timeout is not None:
        dept.ring_timeout = ring_timeout
    if voicemail is not None:
        dept.voicemail_enabled = voicemail
    if phone_assistance is not None:
        dept.phone_assistance = phone_assistance
    if form_url is not None:
        dept.form_url = form_url
    if email is not None:
        dept.email = email
    db.commit()
    return dept


def closure(db, code: str, start: date, end: date | None = None, reason: str = ""):
    """An exceptional closure of whole days (one day when `end` is not given)."""
    exc = operations.add_exception(db, operations.get_departement(db, code), "closure", start,
                                   end or start, reason)
    db.commit()
    return exc


def opening(db, code: str, day: date, start: time, end: time, reason: str = ""):
    """An exceptional opening of one day, with its hours."""
    exc = operations.add_exception(db, operations.get_departement(db, code), "opening", day, day,
                                   reason, start, end)
    db.commit()
    return exc


def call(db, *, sid: str | None = None, departement: str | None = "93",
         thematique: str | None = None, started_at: datetime = DEFAULT_AT,
         outcome: Outcome | None = Outcome.answered, status: str = "completed",
         caller: str | None = "+33612345678", events: int = 0, solicitation: bool = True,
         **columns) -> Call:
    """A tracked call (finished and answered unless told), with `events` step events and, when it
    reached a département, its solicitation row as the SVI creates it."""
    sid = sid or f"CA{next(_sids):032x}"
    row = Call(call_sid=sid, started_at=started_at, status=status, outcome=outcome,
               departement_code=departement, thematique=thematique,
               caller_hash=f"hash-{caller}" if caller else None,
               caller_masked="+336••••••78" if caller else "masqué", **columns)
    db.add(row)
    db.flush()
    for _ in range(events):
        db.add(CallEvent(call_id=row.id, kind="step", step="departement", at=started_at,
                         data={"From": row.caller_masked}))
    if solicitation:
        solicitations.sync_call(db, row)
    db.commit()
    return row


def solicitation_row(db, *, departement: str = "75", occurred_at: datetime = DEFAULT_AT,
                     channel: Channel = Channel.email, thematique: str | None = None,
                     motif: str | None = None, sous_motif: str | None = None,
                     comment: str = "", source: Source = Source.manual) -> Solicitation:
    """A solicitation added by hand (an email unless told), qualified when given keys or labels."""
    row = solicitations.add(db, departement=departement, occurred_at=occurred_at, channel=channel,
                            thematique=thematique, motif=motif, sous_motif=sous_motif,
                            comment=comment, source=source, actor=ACTOR)
    db.commit()
    return row


def tickets(db) -> list:
    """Every ticket, oldest first, read afresh."""
    from sqlalchemy import select

    from tickets.models import Ticket
    db.expire_all()
    return db.scalars(select(Ticket).order_by(Ticket.id)).all()
