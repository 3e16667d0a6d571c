"""Tickets: the working-hour deadline, numbers, the workflow, escalation rights, incidents and
their messages, the callers' data purge, the command line."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select

from accounts import operations as accounts
from accounts.models import Role
from audit.operations import Actor
from directory.cache import current_version
from directory.schedule import DepartementView, Exception_, Slot
from tests import factories
from tests.conftest import PARIS
from tickets import incidents, operations, sla
from tickets.models import ClosureStatus, Ticket, TicketEvent, TicketKind, TicketStatus
from tracking.models import Solicitation

ADMIN = Actor.cli()


@pytest.fixture(autouse=True)
def outbox(request, tmp_path):
    """Emails (no SMTP here) are written under tmp_path, for the tests with an app."""
    if "app" in request.fixturenames:
        request.getfixturevalue("app").config["MAIL_OUTBOX_DIR"] = str(tmp_path / "outbox")
    return tmp_path / "outbox"


def _view(code: str, subdiv: str | None, **kw) -> DepartementView:
    """Monday to Friday 09:00–12:00 and 14:00–17:00."""
    slots = tuple(Slot(wd, s, e) for wd in range(5)
                  for s, e in ((time(9), time(12)), (time(14), time(17))))
    return DepartementView(code=code, name=code, holiday_subdiv=subdiv, slots=slots, **kw)


# --- the working-hour deadline (pure) ----------------------------------------------------------

def test_deadline_friday_before_saint_etienne_in_moselle_and_in_paris():
    # Friday 23 December 2033, 16:20 in Paris; 26 December 2033 is a Monday: Saint-Étienne,
    # a public holiday in Moselle (57) only.
    created = datetime(2033, 12, 23, 16, 20, tzinfo=PARIS)
    assert created.weekday() == 4
    # 40 minutes on Friday until 17:00; the weekend; Monday 26 closed in 57 (holiday): the
    # remaining 20 minutes are counted from Tuesday's opening.
    assert sla.deadline(_view("57", "57"), created) == datetime(2033, 12, 27, 9, 20, tzinfo=PARIS)
    # In Paris, Monday 26 is worked.
    assert sla.deadline(_view("75", None), created) == datetime(2033, 12, 26, 9, 20, tzinfo=PARIS)
    # The result is UTC.
    assert sla.deadline(_view("75", None), created).tzinfo is UTC


def test_deadline_counts_only_opening_hours():
    paris = _view("75", None)
    at = lambda *a: datetime(2026, 12, *a, tzinfo=PARIS)  # noqa: E731  (21 Dec 2026: a Monday)
    assert sla.deadline(paris, at(21, 10, 0)) == at(21, 11, 0)       # within a slot
    assert sla.deadline(paris, at(21, 11, 30)) == at(21, 14, 30)     # over lunch
    assert sla.deadline(paris, at(21, 7, 0)) == at(21, 10, 0)        # before opening
    assert sla.deadline(paris, at(21, 18, 0)) == at(22, 10, 0)       # after closing
    assert sla.deadline(paris, at(21, 12, 0)) == at(21, 15, 0)       # at the slot's end
    assert sla.deadline(paris, at(21, 10, 0), minutes=0) == at(21, 10, 0)
    assert sla.deadline(paris, at(21, 10, 0), minutes=8 * 60) == at(22, 12, 0)
    # Christmas (Friday 25) is a holiday everywhere: Thursday 24 16:30 → Monday 28 09:30.
    assert sla.deadline(paris, at(24, 16, 30)) == at(28, 9, 30)
    with pytest.raises(ValueError):
        sla.deadline(paris, datetime(2026, 12, 21, 10, 0))


def test_deadline_follows_closures_openings_worked_holidays_and_timezones():
    at = lambda *a: datetime(2026, 12, *a, tzinfo=PARIS)  # noqa: E731
    closed = _view("75", None, exceptions=(Exception_("closure", date(2026, 12, 22),
                                                      date(2026, 12, 23), "inventaire"),))
    assert sla.deadline(closed, at(21, 16, 30)) == at(24, 9, 30)
    saturday = _view("75", None, exceptions=(Exception_("opening", date(2026, 12, 26),
                                                        date(2026, 12, 26), "permanence",
                                                        time(10), time(12)),))
    # Saturday 26 (an exceptional opening) counts; Friday 25 is Christmas.
    assert sla.deadline(saturday, at(24, 16, 30)) == at(26, 10, 30)
    worked = _view("57", "57", worked_holidays=frozenset({"Saint-Étienne"}))
    assert sla.deadline(worked, datetime(2033, 12, 23, 16, 20, tzinfo=PARIS)) \
        == datetime(2033, 12, 26, 9, 20, tzinfo=PARIS)
    # La Réunion (UTC+4): its own 09:00.
    reunion = _view("974", "974", timezone="Indian/Reunion")
    assert sla.deadline(reunion, datetime(2026, 12, 21, 4, 30, tzinfo=UTC)) \
        == datetime(2026, 12, 21, 6, 0, tzinfo=UTC)  # 08:30 there: opens 09:00, due 10:00
    # Never open: no deadline.
    assert sla.deadline(DepartementView(code="xx", name="xx"), at(21, 10, 0)) is None


def test_deadline_without_departement_uses_the_national_hours():
    # Monday to Friday 09:00–17:00, Paris, national holidays.
    at = lambda *a: datetime(2026, 12, *a, tzinfo=PARIS)  # noqa: E731
    assert sla.deadline(None, at(21, 16, 30)) == at(22, 9, 30)
    assert sla.deadline(None, at(24, 16, 30)) == at(28, 9, 30)


def test_deadline_across_the_change_to_summer_time():
    # Sunday 28 March 2027, clocks go forward; a slot 09:00–17:00 every day.
    every_day = DepartementView(code="75", name="75",
                                slots=tuple(Slot(wd, time(9), time(17)) for wd in range(7)))
    start = datetime(2027, 3, 27, 16, 30, tzinfo=PARIS)
    assert sla.deadline(every_day, start) == datetime(2027, 3, 28, 9, 30, tzinfo=PARIS)


# --- helpers ---------------------------------------------------------------------------------

def _user(db, email, role=Role.referent, departements=("93",)):
    user = accounts.create(db, ADMIN, email=email, role=role,
                           departements=departements if role is Role.referent else ())
    db.commit()
    return user


def _voicemail(db, clock, *, departement="93", at=None, thematique=None, seconds=42):
    at = at or clock()
    call = factories.call(db, departement=departement, started_at=at, thematique=thematique,
                          recording_url="https://api.twilio.com/rec/RE1", recording_seconds=seconds)
    ticket = operations.from_voicemail(db, call, at=at)
    db.commit()
    return ticket


# --- creation ----------------------------------------------------------------------------------

def test_voicemail_ticket_is_created_once_with_its_deadline_and_row(app, db, clock):
    # Friday 23 December 2033 16:20 in Moselle, default hours (09:30–11:30, 14:00–16:30):
    # 10 minutes on Friday, Saint-Étienne on Monday, 50 minutes on Tuesday.
    clock.set("2033-12-23T16:20")
    ticket = _voicemail(db, clock, departement="57")
    assert ticket.number == "T-2033-000001" and ticket.kind is TicketKind.voicemail
    assert ticket.status is TicketStatus.new and not ticket.national
    assert ticket.due_at == datetime(2033, 12, 27, 10, 20, tzinfo=PARIS)
    assert ticket.caller_masked == "+336••••••78" and ticket.recording_seconds == 42
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == ticket.call_id)).one()
    assert ticket.solicitation_id == row.id
    assert "42 s" in ticket.description and "23/12/2033 à 16:20" in ticket.description
    [created] = [e for e in ticket.events if e.kind == "created"]
    assert created.actor == "système:svi"
    # Again (a replayed webhook): the same ticket.
    again = operations.from_voicemail(db, ticket.call)
    assert again.id == ticket.id
    assert db.scalar(select(Ticket.id).where(Ticket.id != ticket.id)) is None
    # The same ticket in Paris: due on Monday 26.
    paris = _voicemail(db, clock, departement="75")
    assert paris.number == "T-2033-000002"
    assert paris.due_at == datetime(2033, 12, 26, 10, 20, tzinfo=PARIS)


def test_test_calls_get_no_ticket(app, db, clock):
    call = factories.call(db, departement="93", test=True, solicitation=False)
    assert operations.from_voicemail(db, call) is None
    assert operations.from_callback(db, call, "+33612345678") is None
    assert db.scalar(select(Ticket.id)) is None


def test_callback_ticket_keeps_the_number_and_refuses_a_bad_one(app, db, clock):
    call = factories.call(db, departement="93", caller=None)
    with pytest.raises(operations.TicketError, match="numéro à rappeler invalide"):
        operations.from_callback(db, call, "06 12 34 56 78\x00")
    ticket = operations.from_callback(db, call, "+33612345678")
    db.commit()
    assert ticket.kind is TicketKind.callback and ticket.callback_number == "+33612345678"
    assert ticket.caller_masked == "masqué" and "+3361234" not in ticket.description
    assert operations.from_callback(db, call, "+33699999999").id == ticket.id
    # A voicemail ticket of the same call is another ticket.
    assert operations.from_voicemail(db, call).id != ticket.id


def test_numbers_follow_each_other_per_year_and_never_collide(app, db, clock):
    clock.set("2026-12-31T23:30")
    assert _voicemail(db, clock).number == "T-2026-000001"
    assert _voicemail(db, clock).number == "T-2026-000002"
    clock.set("2027-01-01T00:10")
    assert _voicemail(db, clock).number == "T-2027-000001"
    # Creations at once, from several webhooks (the voice path's sessions): each waits for the
    # counter's lock held by the others.
    calls = [factories.call(db, departement="93") for _ in range(6)]
    maker = app.extensions["svi.voice_sessionmaker"]
    numbers, errors = [], []
    start = threading.Barrier(len(calls))

    def create(call_id):
        try:
            with maker() as session:
                start.wait()
                session.connection(execution_options={"sqlite_immediate": True})
                call = session.get(type(calls[0]), call_id)
                numbers.append(operations.from_voicemail(session, call).number)
                session.commit()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(c.id,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(numbers) == [f"T-2027-{n:06d}" for n in range(2, 8)]


def test_a_referent_decision_and_a_technical_incident(app, db, clock):
    referent = _user(db, "ref93@example.gouv.fr")
    row = factories.solicitation_row(db, departement="93", thematique="usage", motif="saisie")
    actor = Actor.user(referent)
    ticket = operations.from_solicitation(db, actor, row, "  À rappeler demain matin.  ",
                                          requester_email="Agent@Example.gouv.fr")
    db.commit()
    assert ticket.kind is TicketKind.referent and not ticket.national
    assert ticket.description == "À rappeler demain matin."
    assert ticket.requester_email == "agent@example.gouv.fr"
    assert ticket.title.startswith("Usage") and ticket.title.endswith("(93 – Seine-Saint-Denis)")
    assert ticket.events[0].actor == "utilisateur:ref93@example.gouv.fr"
    assert ticket.events[0].actor_user_id == referent.id
    technical = factories.solicitation_row(db, departement="93", thematique="assistance_technique",
                                           motif="incident")
    incident = operations.from_solicitation(db, actor, technical, "Écran blanc à la connexion.")
    db.commit()
    assert incident.kind is TicketKind.incident and incident.national
    db.refresh(technical)
    assert technical.escalated is True
    for bad, message in (("", "à renseigner"), ("a\x00b", r"U\+0000"), ("x" * 4001, "trop long")):
        with pytest.raises(operations.TicketError, match=message):
            operations.from_solicitation(db, actor, row, bad)
    with pytest.raises(operations.TicketError, match="adresse du demandeur invalide"):
        operations.from_solicitation(db, actor, row, "ok", requester_email="pas une adresse")


# --- workflow ----------------------------------------------------------------------------------

def test_workflow_from_creation_to_closure(app, db, clock):
    referent = _user(db, "ref93@example.gouv.fr")
    actor = Actor.user(referent)
    ticket = _voicemail(db, clock)
    assert ticket.is_late(clock() + timedelta(hours=2)) and not ticket.is_late(clock())
    clock.set("2026-12-21T10:30")
    operations.take(db, actor, ticket, referent, by=referent)
    db.commit()
    assert ticket.status is TicketStatus.in_progress and ticket.assigned_to_id == referent.id
    assert ticket.taken_at == datetime(2026, 12, 21, 10, 30, tzinfo=PARIS)
    with pytest.raises(operations.TicketError, match="en cours : il ne peut pas passer nouveau"):
        operations.set_status(db, actor, ticket, TicketStatus.new)
    with pytest.raises(operations.TicketError, match="statut de clôture"):
        operations.set_status(db, actor, ticket, TicketStatus.closed)
    operations.set_status(db, actor, ticket, TicketStatus.waiting)
    operations.comment(db, actor, ticket, "Rappel sans réponse, nouvel essai demain.")
    operations.set_status(db, actor, ticket, TicketStatus.in_progress)
    clock.set("2026-12-21T11:00")
    operations.set_status(db, actor, ticket, TicketStatus.resolved)
    assert ticket.resolved_at == datetime(2026, 12, 21, 11, 0, tzinfo=PARIS)
    operations.set_status(db, actor, ticket, TicketStatus.in_progress)  # reopened
    assert ticket.resolved_at is None  # reopened; the first taking stays
    assert ticket.taken_at == datetime(2026, 12, 21, 10, 30, tzinfo=PARIS)
    operations.set_status(db, actor, ticket, TicketStatus.resolved)
    operations.close(db, actor, ticket, ClosureStatus.by_referent, by=referent)
    db.commit()
    assert ticket.status is TicketStatus.closed and ticket.closure_status is ClosureStatus.by_referent
    db.refresh(ticket.solicitation)
    assert ticket.solicitation.resolved_first_level is True
    with pytest.raises(operations.TicketError, match="déjà clos"):
        operations.close(db, actor, ticket, ClosureStatus.confirmed)
    kinds = [e.kind for e in db.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                                        .order_by(TicketEvent.id))]
    assert kinds == ["created", "email", "assigned", "status", "status", "comment", "status",
                     "status", "status", "status", "closed"]
    texts = [e.text for e in ticket.events if e.kind == "status"]
    assert texts[0] == "Statut : nouveau → en cours."
    assert all(e.actor == "utilisateur:ref93@example.gouv.fr" for e in ticket.events
               if e.kind not in ("created", "email"))


def test_who_may_handle_a_ticket(app, db, clock):
    ref93 = _user(db, "ref93@example.gouv.fr")
    ref75 = _user(db, "ref75@example.gouv.fr", departements=("75",))
    national = _user(db, "nat@example.gouv.fr", Role.national)
    ticket = _voicemail(db, clock)
    assert operations.may_read(ref93, ticket) and not operations.may_read(ref75, ticket)
    assert operations.may_read(national, ticket) and not operations.may_handle(national, ticket)
    for action in (lambda: operations.take(db, Actor.user(ref75), ticket, ref75, by=ref75),
                   lambda: operations.comment(db, Actor.user(ref75), ticket, "x", by=ref75),
                   lambda: operations.close(db, Actor.user(ref75), ticket,
                                            ClosureStatus.by_referent, by=ref75)):
        with pytest.raises(operations.TicketForbidden):
            action()
    with pytest.raises(operations.TicketForbidden, match="équipe nationale"):
        operations.close(db, Actor.user(ref93), ticket, ClosureStatus.by_national, by=ref93)
    with pytest.raises(operations.TicketError, match="réservé à la clôture automatique"):
        operations.close(db, Actor.user(ref93), ticket, ClosureStatus.delay_exceeded)
    visible = lambda user: set(db.scalars(select(Ticket.id).where(  # noqa: E731
        *([c] if (c := operations.visible(user)) is not None else []))))
    assert visible(ref93) == {ticket.id} and visible(ref75) == set()
    assert visible(national) == {ticket.id}


def test_escalation_is_reserved_to_the_departement_referents_and_admins(app, db, clock):
    ref93 = _user(db, "ref93@example.gouv.fr")
    ref75 = _user(db, "ref75@example.gouv.fr", departements=("75",))
    national = _user(db, "nat@example.gouv.fr", Role.national)
    ticket = _voicemail(db, clock)
    for user in (ref75, national):
        with pytest.raises(operations.TicketForbidden, match="seuls les référents"):
            operations.escalate(db, Actor.user(user), user, ticket, "Reformulation")
    assert not ticket.national
    accounts_disabled = _user(db, "ancien@example.gouv.fr")
    accounts_disabled.active = False
    db.commit()
    with pytest.raises(operations.TicketForbidden):
        operations.escalate(db, Actor.user(accounts_disabled), accounts_disabled, ticket, "x")
    with pytest.raises(operations.TicketError, match="description reformulée : à renseigner"):
        operations.escalate(db, Actor.user(ref93), ref93, ticket, "   ")
    operations.escalate(db, Actor.user(ref93), ref93, ticket, "L'usager ne peut plus se connecter.")
    db.commit()
    assert ticket.national and ticket.solicitation.escalated is True
    [escalated] = [e for e in ticket.events if e.kind == "escalated"]
    assert escalated.text == "L'usager ne peut plus se connecter."
    assert escalated.actor == "utilisateur:ref93@example.gouv.fr"
    with pytest.raises(operations.TicketError, match="déjà suivi par l'équipe nationale"):
        operations.escalate(db, Actor.user(ref93), ref93, ticket, "encore")
    # Now the national team handles it and may close it as such.
    assert operations.may_handle(national, ticket)
    operations.close(db, Actor.user(national), ticket, ClosureStatus.by_national, by=national)
    db.commit()
    db.refresh(ticket.solicitation)
    assert ticket.solicitation.resolved_first_level is False


def test_late_tickets(app, db, clock):
    referent = _user(db, "ref93@example.gouv.fr")
    first = _voicemail(db, clock)  # Monday 10:00, due 11:00
    clock.set("2026-12-21T10:45")
    second = _voicemail(db, clock, departement="75")  # 45 min before 11:30: due 14:15
    now = datetime(2026, 12, 21, 11, 30, tzinfo=PARIS)
    assert [t.id for t in operations.late(db, now)] == [first.id]
    assert operations.count_late(db, now) == 1 and operations.count_late(db, now, ["75"]) == 0
    later = datetime(2026, 12, 21, 14, 30, tzinfo=PARIS)
    assert [t.id for t in operations.late(db, later)] == [first.id, second.id]
    assert [t.id for t in operations.late(db, later, departement_code="75")] == [second.id]
    operations.take(db, Actor.user(referent), first, referent)
    db.commit()
    assert [t.id for t in operations.late(db, later)] == [second.id]


# --- incidents ---------------------------------------------------------------------------------

def test_incident_messages_move_the_directory_version_and_expire(app, db, clock):
    national = Actor.cli()
    version = current_version(db)
    everywhere = incidents.create(db, national, "Panne du SI", "Connexion impossible")
    local = incidents.create(db, national, "Lenteurs", departement_code="93")
    db.commit()
    assert current_version(db) == version  # no message yet: nothing callers hear changed
    until = datetime(2026, 12, 21, 12, 0, tzinfo=PARIS)
    incidents.set_message(db, national, everywhere, "Le SI est en panne, nous travaillons  à "
                          "le rétablir.", None)
    incidents.set_message(db, national, local, "Lenteurs en Seine-Saint-Denis.", until)
    db.commit()
    assert current_version(db) > version
    now = datetime(2026, 12, 21, 10, 0, tzinfo=PARIS)
    messages = incidents.active_messages(db, now)
    assert messages == {None: ["Le SI est en panne, nous travaillons à le rétablir."],
                        "93": ["Lenteurs en Seine-Saint-Denis."]}
    assert incidents.messages_for(messages, "93") == [
        "Le SI est en panne, nous travaillons à le rétablir.", "Lenteurs en Seine-Saint-Denis."]
    assert incidents.messages_for(messages, "75") == messages[None]
    after = datetime(2026, 12, 21, 12, 0, tzinfo=PARIS)
    assert incidents.active_messages(db, after) == {None: messages[None]}
    found = incidents.announcements(db)
    assert len(found) == 2 and incidents.group(found, after) == {None: messages[None]}
    with pytest.raises(operations.TicketError, match="déjà passée"):
        incidents.set_message(db, national, local, "Trop tard", datetime(2026, 12, 21, 9, 0,
                                                                        tzinfo=PARIS))
    with pytest.raises(operations.TicketError, match="U\\+0007"):
        incidents.set_message(db, national, local, "bip\x07", None)
    moved = current_version(db)
    incidents.close(db, national, everywhere)
    db.commit()
    assert current_version(db) > moved and incidents.active_messages(db, now) == {
        "93": ["Lenteurs en Seine-Saint-Denis."]}
    incidents.set_message(db, national, local, "", None)
    db.commit()
    assert incidents.active_messages(db, now) == {}
    with pytest.raises(operations.TicketError, match="département inconnu"):
        incidents.create(db, national, "x", departement_code="99")


def test_tickets_linked_to_an_incident(app, db, clock):
    incident = incidents.create(db, ADMIN, "Panne du SI")
    tickets = [_voicemail(db, clock) for _ in range(2)]
    for ticket in tickets:
        incidents.link(db, ADMIN, ticket, incident)
    db.commit()
    db.refresh(incident)
    assert [t.id for t in incident.tickets] == [t.id for t in tickets]
    assert tickets[0].events[-1].kind == "incident"
    incidents.link(db, ADMIN, tickets[0], None)
    incidents.close(db, ADMIN, incident)
    db.commit()
    with pytest.raises(operations.TicketError, match="est clos"):
        incidents.link(db, ADMIN, tickets[0], incident)


def test_a_ticket_links_only_to_an_incident_of_its_departement_or_of_all(app, db, clock):
    paris = incidents.create(db, ADMIN, "Panne à Paris", departement_code="75")
    everywhere = incidents.create(db, ADMIN, "Panne nationale")
    ticket = _voicemail(db, clock, departement="93")
    assert incidents.open_incidents(db, for_ticket=ticket) == [everywhere]
    with pytest.raises(operations.TicketError, match="concerne un autre département"):
        incidents.link(db, ADMIN, ticket, paris)
    incidents.link(db, ADMIN, ticket, everywhere)
    db.commit()
    assert ticket.incident_id == everywhere.id


# --- callers' data -----------------------------------------------------------------------------

def test_purge_forgets_the_callers_of_old_tickets(app, db, clock):
    old = factories.call(db, departement="93", started_at=datetime(2025, 1, 6, 9, 0, tzinfo=UTC))
    clock.set(datetime(2025, 1, 6, 10, 0, tzinfo=PARIS))
    old_ticket = operations.from_callback(db, old, "+33612345678")
    clock.set("2026-12-21T10:00")
    recent = operations.from_callback(db, factories.call(db, departement="93"), "+33699999999")
    db.commit()
    assert operations.purge_callers(db, before=datetime(2026, 1, 1, tzinfo=UTC)) == 1
    db.commit()
    db.refresh(old_ticket)
    db.refresh(recent)
    assert (old_ticket.callback_number, old_ticket.caller_masked) == (None, "purgé")
    assert recent.callback_number == "+33699999999"
    assert operations.purge_callers(db, before=datetime(2026, 1, 1, tzinfo=UTC)) == 0


# --- command line ------------------------------------------------------------------------------

def test_tickets_command_line(app, db, clock):
    ticket = _voicemail(db, clock)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["tickets", "list"])
    assert listed.exit_code == 0 and ticket.number in listed.output
    assert "93" in listed.output and "nouveau" in listed.output
    clock.set("2026-12-21T15:00")
    late = runner.invoke(args=["tickets", "list", "--en-retard"])
    assert "EN RETARD" in late.output
    assert runner.invoke(args=["tickets", "list", "--departement", "75"]).output.count("T-") == 0
    commented = runner.invoke(args=["tickets", "comment", ticket.number, "Vu en réunion"])
    assert commented.exit_code == 0, commented.output
    closed = runner.invoke(args=["tickets", "close", ticket.number.lower(), "--statut", "referent"])
    assert closed.exit_code == 0 and "clos par le référent" in closed.output
    shown = runner.invoke(args=["tickets", "show", ticket.number])
    assert "Vu en réunion" in shown.output and "clos par le référent" in shown.output
    assert "cli:" in shown.output
    missing = runner.invoke(args=["tickets", "show", "T-2026-999999"])
    assert missing.exit_code == 1 and "ticket introuvable" in missing.output
    again = runner.invoke(args=["tickets", "close", ticket.number, "--statut", "confirme"])
    assert again.exit_code == 1 and "déjà clos" in again.output


def test_ticket_settings_are_read_and_checked():
    from core import settings
    loaded = settings.load("/tmp", environ={"TICKETS_SLA_MINUTES": "90", "TICKETS_AUTO_CLOSE_DAYS": "10"})
    assert (loaded["TICKETS_SLA_MINUTES"], loaded["TICKETS_AUTO_CLOSE_DAYS"]) == (90, 10)
    assert settings.load("/tmp", environ={})["TICKETS_AUTO_CLOSE_DAYS"] == 7
    for bad in ("0", "-3"):
        with pytest.raises(settings.SettingsError, match="TICKETS_AUTO_CLOSE_DAYS doit valoir entre 1 et 365"):
            settings.load("/tmp", environ={"TICKETS_AUTO_CLOSE_DAYS": bad})
    with pytest.raises(settings.SettingsError, match="nombre entier"):
        settings.load("/tmp", environ={"TICKETS_SLA_MINUTES": "une heure"})


def test_the_deadline_follows_the_setting(app, db, clock):
    app.config["TICKETS_SLA_MINUTES"] = 30
    assert _voicemail(db, clock).due_at == datetime(2026, 12, 21, 10, 30, tzinfo=PARIS)
