"""A voicemail becomes a ticket where the tracking record stores the recording: exactly once,
whether Twilio retries the recording webhook or the record is replayed from the journal."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from core.db import make_engine
from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record, heard
from tickets.models import TicketKind, TicketStatus
from tracking.journal import apply_entries, journal_of
from tracking.models import Outcome, Solicitation

NOBODY = Referent("no-answer")
TO_93 = ["93", "1", "1"]


def test_a_voicemail_becomes_a_ticket(twilio, db, clock):
    clock.set("2026-12-21T10:00")
    t = twilio.call(caller="+33612345678", keys=TO_93 + ["3"], voicemail_seconds=40)
    assert "Pour laisser un message, tapez 3." in heard(t)
    assert "Votre message a bien été enregistré." in heard(t)
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.voicemail
    [ticket] = factories.tickets(db)
    assert (ticket.kind, ticket.status, ticket.call_id) == (TicketKind.voicemail, TicketStatus.new,
                                                             call.id)
    assert ticket.departement_code == "93" and ticket.recording_seconds == 40
    assert ticket.caller_masked == "+336••••••78" and ticket.callback_number is None
    assert ticket.created_at == clock.now  # the instant of the recording webhook
    assert ticket.due_at is not None and ticket.due_at > ticket.created_at
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()
    assert ticket.solicitation_id == row.id


def test_a_caller_who_chooses_nothing_still_reaches_the_voicemail(twilio, db):
    t = twilio.call(caller="+33612345678", keys=TO_93, voicemail_seconds=12)
    assert "Nous pouvons vous rappeler." in heard(t)
    assert [t.kind for t in factories.tickets(db)] == [TicketKind.voicemail]


def test_a_voicemail_left_while_closed_becomes_a_ticket_too(twilio, db, clock):
    clock.set("2026-12-19T10:00")  # Saturday: closed, voicemail offered
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], voicemail_seconds=20)
    assert call_record(db, t.call_sid).outcome is Outcome.out_of_hours
    [ticket] = factories.tickets(db)
    assert ticket.kind is TicketKind.voicemail and ticket.departement_code == "75"


def test_an_empty_voicemail_is_no_ticket(twilio, db):
    twilio.call(caller="+33612345678", keys=TO_93 + ["3"], voicemail_seconds=0)
    assert factories.tickets(db) == []


def test_a_retried_recording_webhook_makes_one_ticket(twilio, db):
    t = twilio.call(caller="+33612345678", keys=TO_93 + ["3"], voicemail_seconds=25)
    url, params, _ = next(r for r in t.requests if r[1].get("RecordingUrl"))
    for _ in range(2):  # Twilio retries it (a timeout on its side), twice
        status, body = twilio.post(t, url, params)
        assert status == 200 and "Votre message a bien été enregistré." in body
    assert [t.kind for t in factories.tickets(db)] == [TicketKind.voicemail]


def test_a_recording_replayed_from_the_journal_makes_one_ticket(app, twilio, db):
    """The database does not answer when the message ends: the caller is thanked, the record
    (and Twilio's retry of it) waits in the journal; the replay makes one ticket, and applying
    the same entries again changes nothing."""
    t, pause = twilio.begin(caller="+33612345678")
    for digits in TO_93:
        t, pause = twilio.answer(pause, digits, referent=NOBODY)
    journal = journal_of(app)
    working = app.extensions["svi.voice_sessionmaker"], journal.sessions
    broken = sessionmaker(make_engine(
        "postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1"))
    app.extensions["svi.voice_sessionmaker"] = journal.sessions = broken
    try:
        t, pause = twilio.answer(pause, "3", referent=NOBODY, voicemail_seconds=30)
        assert pause is None and "Votre message a bien été enregistré." in heard(t)
        url, params, _ = next(r for r in t.requests if r[1].get("RecordingUrl"))
        twilio.post(t, url, params)  # Twilio's retry, journaled as well
        entries = journal.pending()
        assert [e["kind"] for e in entries][-2:] == ["step", "step"]
        assert factories.tickets(db) == []
    finally:
        app.extensions["svi.voice_sessionmaker"], journal.sessions = working
    assert journal.wait_until_empty(timeout=30)
    [ticket] = factories.tickets(db)
    assert ticket.kind is TicketKind.voicemail and ticket.recording_seconds == 30
    assert apply_entries(app.extensions["svi.sessionmaker"], entries) == 0  # already applied
    assert len(factories.tickets(db)) == 1
    assert call_record(db, t.call_sid).outcome is Outcome.voicemail


def test_a_test_call_leaves_no_ticket(twilio, db):
    twilio.call(caller="+33612345678", keys=TO_93 + ["3"], voicemail_seconds=10, test=True)
    assert factories.tickets(db) == []
