"""Second hostile review of the tickets (issue 11): PostgreSQL, the scheduled jobs, concurrency,
emails over a real SMTP server on loopback, authorization, absurd input, recordings.

Each test names a defect the review found (and that is now fixed): what a user saw, and what
is expected. On SQLite and PostgreSQL (the `app` fixture) unless said otherwise.
"""

from __future__ import annotations

import email
import email.policy
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from accounts.models import Role, User
from audit.operations import Actor
from core.db import make_engine
from devtools.twilio_standin import TwilioStandin, silent_mp3
from ivr.simulator import Referent
from scheduler import jobs
from tests import factories, mailserver
from tests.webclient import csrf_token, login, make_user
from tickets import emails, operations
from tickets.models import ClosureStatus, Ticket, TicketEvent, TicketStatus
from tracking.journal import journal_of

ROOT = Path(__file__).resolve().parent.parent
NOBODY = Referent("no-answer")
TO_93 = ["93", "1", "1"]


# --- helpers -------------------------------------------------------------------------------------

@pytest.fixture
def inbox():
    with mailserver.running() as handler:
        yield handler


@pytest.fixture
def mail_app(app, inbox, tmp_path):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=inbox.port, SMTP_TIMEOUT=5,
                      MAIL_OUTBOX_DIR=str(tmp_path / "outbox"),
                      NATIONAL_TEAM_EMAILS="equipe.nationale@example.gouv.fr")
    yield app
    emails.drain(app)


@pytest.fixture(autouse=True)
def _outbox(request, tmp_path):
    """Emails of the tests with an app (no SMTP unless `mail_app`) go under tmp_path."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    if not app.config.get("NATIONAL_TEAM_EMAILS"):
        app.config["NATIONAL_TEAM_EMAILS"] = "equipe.nationale@example.gouv.fr"
    app.config["MAIL_OUTBOX_DIR"] = str(tmp_path / "outbox")
    yield
    emails.drain(app)


def _user(db, address, role=Role.referent, departements=("93",)) -> User:
    return make_user(db, address, role, departements=departements if role is Role.referent else ())


def _client(app, db, address, role=Role.referent, departements=("93",)):
    _user(db, address, role, departements)
    client = app.test_client()
    assert login(client, address).status_code == 302
    return client


def _voicemail(db, clock, departement="93", recording_url="https://api.twilio.com/2010-04-01/"
               "Accounts/AC00000000000000000000000000000000/Recordings/RE0123") -> Ticket:
    call = factories.call(db, departement=departement, started_at=clock(),
                          recording_url=recording_url, recording_seconds=42)
    ticket = operations.from_voicemail(db, call, at=clock())
    db.commit()
    return ticket


def _events(app, ticket_id: int, kind: str) -> list[TicketEvent]:
    with app.extensions["svi.sessionmaker"]() as fresh:
        return list(fresh.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id,
                                                            TicketEvent.kind == kind)
                                  .order_by(TicketEvent.id)))


def _fresh(app, ticket_id: int) -> Ticket:
    with app.extensions["svi.sessionmaker"](expire_on_commit=False) as fresh:
        ticket = fresh.get(Ticket, ticket_id)
        fresh.expunge(ticket)
        return ticket


def _requester_ticket(db, clock, referent, address="agent@example.gouv.fr",
                      status=TicketStatus.in_progress) -> Ticket:
    row = factories.solicitation_row(db, departement="93", thematique="usage", motif="saisie",
                                     occurred_at=clock())
    ticket = operations.from_solicitation(db, Actor.user(referent), row, "À traiter",
                                          requester_email=address)
    operations.take(db, Actor.user(referent), ticket, referent)
    if status is TicketStatus.resolved:
        operations.set_status(db, Actor.user(referent), ticket, TicketStatus.resolved)
    db.commit()
    return ticket


# === personal data and dependencies ===============================================================

def test_confirmed_callback_number_is_not_in_clear_in_the_tracking_journal(app, twilio, db):
    """The database is down when the caller confirms the number to call back: the
    record waits in the local journal (a file on the web server's disk, kept in
    `rejected.jsonl` forever if it never applies) with the number in clear. Expected: the
    journal holds it sealed (like the action URL), never the digits."""
    t, pause = twilio.begin(caller="+33612345678")
    for digits in TO_93 + ["2", "0698765432"]:
        t, pause = twilio.answer(pause, digits, referent=NOBODY)
    journal = journal_of(app)
    working = app.extensions["svi.voice_sessionmaker"], journal.sessions
    broken = sessionmaker(make_engine(
        "postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1"))
    app.extensions["svi.voice_sessionmaker"] = journal.sessions = broken
    try:
        t, pause = twilio.answer(pause, "1", referent=NOBODY)
        assert "Votre demande de rappel est enregistrée" in " ".join(t.heard)
        on_disk = b"".join(p.read_bytes() for p in Path(journal.folder).glob("*.jsonl"))
    finally:
        app.extensions["svi.voice_sessionmaker"], journal.sessions = working
    assert journal.wait_until_empty(timeout=30)
    assert b"698765432" not in on_disk, "callback number in clear in the journal"


def test_requests_is_pinned_in_requirements():
    """tickets/recordings.py imports `requests` directly (streaming, timeouts,
    exceptions) but requirements.txt does not pin it: it only arrives as a dependency of
    `twilio`, at whatever version that resolves to. Expected: `requests==<version>` pinned."""
    assert "import requests" in (ROOT / "tickets" / "recordings.py").read_text()
    pinned = [line.split("==")[0].strip().lower()
              for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.lstrip().startswith("#")]
    assert "requests" in pinned


# === concurrency (two people, or a person and a job, on the same ticket) ==========================

def _at_once(*actions):
    """Run each action in a thread of its own, all released together; their outcomes."""
    barrier = threading.Barrier(len(actions), timeout=5)
    outcomes: list[str] = [""] * len(actions)

    def run(i, action):
        try:
            action(barrier)
            outcomes[i] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported to the test
            outcomes[i] = repr(exc)
    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_two_referents_closing_the_same_ticket_at_once_close_it_once(app, db, clock, tmp_path):
    """Two referents of 93 click « Clore le ticket » on the same ticket at the same moment (one
    « clos par le référent », the other « confirmé par le demandeur »). Both are told it is
    closed; the history holds two « Clos » events with different closure statuses, and the
    requester receives two closure emails. Nothing (no version column, no row lock, no
    conditional UPDATE) stops the second. Expected: one closure; the other is refused (« déjà
    clos ») or fails, and one email leaves."""
    ref_a = _user(db, "ref.a@example.gouv.fr")
    _user(db, "ref.b@example.gouv.fr")
    ticket = _requester_ticket(db, clock, ref_a)
    maker = app.extensions["svi.sessionmaker"]

    def closing(address, closure):
        def action(barrier):
            with maker() as session:
                user = session.scalars(select(User).where(User.email == address)).one()
                found = operations.by_number(session, ticket.number)  # the request loads it
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:  # a fix that locks at load time
                    pass
                operations.close(session, Actor.user(user), found, closure, by=user)
                session.commit()
        return action

    outcomes = _at_once(closing("ref.a@example.gouv.fr", ClosureStatus.by_referent),
                        closing("ref.b@example.gouv.fr", ClosureStatus.confirmed))
    emails.drain(app)
    closed = _events(app, ticket.id, "closed")
    assert len(closed) == 1, ([e.text for e in closed], outcomes)
    sent = [p for p in (tmp_path / "outbox").glob("*.eml")
            if "est close" in email.message_from_bytes(p.read_bytes(),
                                                       policy=email.policy.default)["Subject"]]
    assert len(sent) == 1


def test_a_request_that_read_the_ticket_before_the_auto_closure_cannot_reopen_it(app, db, clock):
    """The nightly auto-closure closes a resolved ticket (« délai dépassé », the requester is
    emailed) while a referent's reopen request (API or form), which had already loaded the
    ticket as « résolu », is being handled. The reopen is written over the closure: the ticket
    ends « en cours » with closure status « délai dépassé » and a closure date, a state the
    workflow forbids (it is neither open nor closed for the lists, the digest, the dashboard).
    Expected: the stale reopen is refused and the ticket stays closed."""
    referent = _user(db, "ref.a@example.gouv.fr")
    clock.set("2026-12-01T10:00")
    ticket = _requester_ticket(db, clock, referent, status=TicketStatus.resolved)
    clock.set("2026-12-21T03:30")
    with app.extensions["svi.sessionmaker"]() as request_session:
        user = request_session.get(User, referent.id)
        stale = operations.by_number(request_session, ticket.number)
        assert stale.status is TicketStatus.resolved
        assert jobs.tickets_auto_close(app).status == "done"  # meanwhile, the job
        try:
            operations.set_status(request_session, Actor.user(user), stale,
                                  TicketStatus.in_progress, by=user)
            request_session.commit()
        except Exception:  # noqa: BLE001 - refused (stale): what is expected
            request_session.rollback()
    found = _fresh(app, ticket.id)
    assert (found.status, found.closure_status) == (TicketStatus.closed,
                                                    ClosureStatus.delay_exceeded), \
        (found.status, found.closure_status, found.closed_at)


# === scheduled jobs ===============================================================================

def test_a_digest_rerun_after_a_partial_failure_does_not_resend_the_digests_already_sent(
        mail_app, db, clock, inbox):
    """The 07:30 digest goes out to 93 and to 75; 75's only referent mailbox is refused by the
    SMTP server, so the run is marked failed (as documented: « run-job sends it again »). The
    operator runs it again once 75 is fixed: 93's referents get the same digest a second time
    (and a third at the next retry...). Expected: a rerun sends only the digests that failed."""
    _user(db, "ref93@example.gouv.fr")
    _user(db, "ref75@example.gouv.fr", departements=("75",))
    clock.set("2026-12-21T10:00")
    _voicemail(db, clock, "93")
    _voicemail(db, clock, "75")
    inbox.envelopes.clear()
    inbox.refuse.add("ref75@example.gouv.fr")
    clock.set("2026-12-22T07:30")
    assert jobs.tickets_digest(mail_app).status == "failed"
    inbox.refuse.clear()
    assert jobs.tickets_digest(mail_app).status == "done"
    subjects = [m["Subject"] for m in inbox.messages()]
    assert sum("(75 – " in s for s in subjects) == 1, subjects
    assert sum("(93 – " in s for s in subjects) == 1, subjects


def test_absurd_ticket_settings_are_refused_at_start():
    """TICKETS_AUTO_CLOSE_DAYS and TICKETS_SLA_MINUTES only have a lower bound. A typo
    (TICKETS_AUTO_CLOSE_DAYS=7000000, TICKETS_SLA_MINUTES=6000000000000) starts the service,
    then the auto-closure fails every night (OverflowError: date value out of range) and every
    voicemail/callback record fails in `sla.deadline` (set aside by the journal: no ticket).
    Expected: the settings check refuses them, naming the setting."""
    from core import settings
    for name, value in (("TICKETS_AUTO_CLOSE_DAYS", "7000000"),
                        ("TICKETS_SLA_MINUTES", "6000000000000")):
        with pytest.raises(settings.SettingsError, match=name):
            settings.load("/tmp", environ={name: value})


# === absurd input =================================================================================

def test_requester_address_growing_when_lowercased_is_a_field_error_not_a_500(app, db, clock):
    """A requester's address is checked for length (254) and then lowercased: « İ » (U+0130)
    becomes two characters. 200 of them pass the check (216 characters) and are stored as 416,
    past the column's VARCHAR(254): on PostgreSQL the referent gets a 500 instead of the field
    error (on SQLite an address longer than any SMTP server takes is stored). Expected: a 400
    with the error on the address field, no ticket."""
    ref93 = _client(app, db, "ref93@example.gouv.fr")
    row = factories.solicitation_row(db, departement="93", thematique="usage", motif="saisie",
                                     occurred_at=clock())
    page = f"/tickets/depuis/{row.reference}"
    response = ref93.post(page, data={"csrf_token": csrf_token(ref93, page),
                                      "description": "À rappeler demain.",
                                      "courriel": "İ" * 200 + "@example.gouv.fr"})
    assert response.status_code == 400, response.status_code
    db.expire_all()
    assert db.scalar(select(Ticket.id)) is None


def test_requester_address_cannot_add_a_second_recipient(mail_app, db, clock, inbox):
    """The requester's address is checked by `[^@\\s]+@[^@\\s]+\\.[^@\\s]+`, which lets a comma
    through: « agent@example.gouv.fr,tous-les-agents » is taken, put as is in the To header,
    and the SMTP client sends the acknowledgement (and later the closure) to a second, local
    recipient as well (a list alias on the relay). Expected: refused as an invalid address."""
    referent = _user(db, "ref93@example.gouv.fr")
    row = factories.solicitation_row(db, departement="93", thematique="usage", motif="saisie",
                                     occurred_at=clock())
    try:
        operations.from_solicitation(db, Actor.user(referent), row, "À rappeler",
                                     requester_email="agent@example.gouv.fr,tous-les-agents")
        db.commit()
    except operations.TicketError:
        db.rollback()
    recipients = [r for e in inbox.envelopes for r in e.rcpt_tos]
    assert not any("tous-les-agents" in r for r in recipients), recipients


# === authorization ================================================================================

def test_the_national_team_cannot_close_as_the_referent(app, db, clock):
    """The national team is offered, and may choose, « clos par le référent » on an escalated
    ticket: the ticket's solicitation row is then marked resolved at the first level although
    the département escalated it, and the history credits the referent with the closure.
    Expected: « clos par le référent » is the département's referents' (and admins') only;
    the national team closes « clos par l'équipe nationale » (or « confirmé par le
    demandeur »)."""
    referent = _user(db, "ref93@example.gouv.fr")
    national = _user(db, "nat@example.gouv.fr", Role.national)
    ticket = _voicemail(db, clock, "93")
    operations.escalate(db, Actor.user(referent), referent, ticket, "Plus de connexion possible")
    db.commit()
    with pytest.raises(operations.TicketForbidden):
        operations.close(db, Actor.user(national), ticket, ClosureStatus.by_referent, by=national)
    db.rollback()
    assert _fresh(app, ticket.id).solicitation_id is not None
    with app.extensions["svi.sessionmaker"]() as fresh:
        row = fresh.get(Ticket, ticket.id).solicitation
        assert row.resolved_first_level is not True


# === recordings ===================================================================================

def test_the_voicemail_answers_range_requests(app, db, clock):
    """Browsers ask for audio by byte ranges (Safari on macOS and iOS only plays media served
    with `206 Partial Content`, and seeking in the player needs it everywhere). The recording
    route ignores `Range` and always answers 200 with the whole file, without `Accept-Ranges`:
    a referent on an iPhone cannot listen to the voicemail. Expected: `Range: bytes=0-1`
    answered 206 with `Content-Range: bytes 0-1/<size>` and the two bytes."""
    audio = silent_mp3(2)
    ref93 = _client(app, db, "ref93@example.gouv.fr")
    with TwilioStandin(auth_token="standin-token") as twilio:
        app.config.update(twilio.settings)
        sid = twilio.add(audio=audio)
        ticket = _voicemail(db, clock, "93", recording_url=twilio.recording_url(sid))
        response = ref93.get(f"/tickets/{ticket.number}/enregistrement",
                             headers={"Range": "bytes=0-1"})
        assert response.status_code == 206, response.status_code
        assert response.headers.get("Content-Range") == f"bytes 0-1/{len(audio)}"
        assert response.get_data() == audio[:2]
        assert response.headers["Accept-Ranges"] == "bytes"
        # Off the end: 416; without Range: the whole file, streamed, ranges announced.
        response = ref93.get(f"/tickets/{ticket.number}/enregistrement",
                             headers={"Range": f"bytes={len(audio) + 10}-"})
        assert response.status_code == 416
        response = ref93.get(f"/tickets/{ticket.number}/enregistrement")
        assert response.status_code == 200 and response.get_data() == audio
        assert response.headers["Accept-Ranges"] == "bytes"
