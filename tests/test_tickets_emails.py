"""Tickets' emails over a real SMTP server on loopback (aiosmtpd), the admins' templates, and the
tickets' scheduled jobs (automatic closure, daily digest) under a controlled clock."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from accounts import operations as accounts
from accounts.models import Role, User
from audit.models import AuditEntry
from audit.operations import Actor
from scheduler import jobs
from tests import factories, mailserver
from tests.conftest import PARIS
from tests.helpers import call_record
from tickets import emails, operations
from tickets.models import ClosureStatus, Ticket, TicketEvent, TicketKind, TicketStatus

ADMIN = Actor.cli()
TEAM = ["equipe.nationale@example.gouv.fr", "pilotage@example.gouv.fr"]


@pytest.fixture
def inbox():
    with mailserver.running() as handler:
        yield handler


@pytest.fixture
def mail_app(app, inbox, tmp_path):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=inbox.port,
                      MAIL_OUTBOX_DIR=str(tmp_path / "outbox"),
                      NATIONAL_TEAM_EMAILS=" , ".join(TEAM))
    yield app
    emails.drain(app)


def _user(db, email_, role=Role.referent, departements=("93",), active=True):
    user = accounts.create(db, ADMIN, email=email_, role=role,
                           departements=departements if role is Role.referent else ())
    user.active = active
    db.commit()
    return user


def _referents(db):
    """Two active referents of 93, a disabled one, and one of 75."""
    return (_user(db, "ref.a@example.gouv.fr"), _user(db, "ref.b@example.gouv.fr"),
            _user(db, "ancien@example.gouv.fr", active=False),
            _user(db, "ref75@example.gouv.fr", departements=("75",)))


def _email_events(db, ticket) -> list[TicketEvent]:
    return list(db.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id,
                                                     TicketEvent.kind == "email")
                           .order_by(TicketEvent.id)))


# --- voicemail and callback ---------------------------------------------------------------------

def test_a_voicemail_through_the_webhooks_emails_the_departement_referents(mail_app, twilio, db,
                                                                          clock, inbox):
    _referents(db)
    clock.set("2026-12-19T10:00")  # Saturday: 93 is closed and takes voicemails
    t = twilio.call(caller="+33612345678", keys=["93"], voicemail_seconds=25)
    assert "Votre message a bien été enregistré." in " ".join(t.heard)
    assert emails.drain(mail_app)
    call = call_record(db, t.call_sid)
    ticket = db.scalars(select(Ticket).where(Ticket.call_id == call.id)).one()
    assert ticket.kind is TicketKind.voicemail and ticket.number == "T-2026-000001"
    # Due one working hour after Monday's opening (09:30).
    assert ticket.due_at == datetime(2026, 12, 21, 10, 30, tzinfo=PARIS)
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["ref.a@example.gouv.fr", "ref.b@example.gouv.fr"]
    [msg] = inbox.messages()
    assert msg["Subject"] == "SVI – nouveau message vocal T-2026-000001 (93 – Seine-Saint-Denis)"
    body = msg.get_content()
    assert "https://svi.example.gouv.fr/tickets/T-2026-000001" in body
    assert "Durée : 25 s" in body and "+336••••••78" in body
    assert "19/12/2026 à 10:00" in body and "21/12/2026 à 10:30" in body
    assert "+33612345678" not in body and "api.twilio.com" not in body
    [sent] = _email_events(db, ticket)
    assert sent.data["sent"] is True and sent.data["to"] == envelope.rcpt_tos
    assert sent.text == "Courriel « nouveau message vocal » envoyé à 2 destinataires."


def test_voice_path_emails_leave_only_after_the_commit(mail_app, db, clock, inbox):
    _referents(db)
    call = factories.call(db, departement="93")
    voice = mail_app.extensions["svi.voice_sessionmaker"]
    with voice() as session:  # a webhook's write that fails: no ticket, no email
        operations.from_callback(session, session.get(type(call), call.id), "+33612345678")
        session.flush()
        session.rollback()
    with voice() as session:
        ticket = operations.from_callback(session, session.get(type(call), call.id),
                                          "+33612345678")
        assert emails.pending(session) and inbox.envelopes == []
        session.commit()
    assert emails.drain(mail_app)
    [msg] = inbox.messages()
    assert msg["Subject"] == f"SVI – demande de rappel {ticket.number} (93 – Seine-Saint-Denis)"
    assert "+336••••••78" in msg.get_content() and "+33612345678" not in msg.get_content()


def test_a_failed_send_keeps_the_ticket_and_says_so(mail_app, db, clock, inbox, caplog):
    _referents(db)
    mail_app.config["SMTP_PORT"] = mailserver.free_port()  # nobody listens there
    call = factories.call(db, departement="93")
    ticket = operations.from_voicemail(db, call)
    db.commit()
    assert db.get(Ticket, ticket.id) is not None and inbox.envelopes == []
    [failed] = _email_events(db, ticket)
    assert failed.data["sent"] is False and "impossible via 127.0.0.1" in failed.data["error"]
    assert failed.text.startswith("Échec de l'envoi du courriel « nouveau message vocal »")
    assert failed.actor == "système:courriel"
    # Without any referent: nothing is sent, and the history says why.
    lonely = operations.from_voicemail(db, factories.call(db, departement="2A"))
    db.commit()
    [none] = _email_events(db, lonely)
    assert none.text == ("Courriel « nouveau message vocal » non envoyé : aucun référent actif "
                         "pour ce département.")


# --- escalation --------------------------------------------------------------------------------

def test_an_escalation_sends_both_emails_and_another_departement_is_refused(mail_app, db, clock,
                                                                           inbox):
    ref_a, _, _, ref75 = _referents(db)
    ticket = operations.from_voicemail(db, factories.call(db, departement="93"))
    db.commit()
    inbox.envelopes.clear()
    with pytest.raises(operations.TicketForbidden):
        operations.escalate(db, Actor.user(ref75), ref75, ticket, "Je transmets.")
    db.rollback()
    assert inbox.envelopes == []
    assert not db.get(Ticket, ticket.id).national
    operations.escalate(db, Actor.user(ref_a), ref_a, ticket,
                        "L'usager ne peut plus valider ses demandes depuis la mise à jour.")
    db.commit()
    assert sorted(e.rcpt_tos[0] for e in inbox.envelopes) == [TEAM[0], ref_a.email]
    confirmation = inbox.by_subject("transmis à l'équipe nationale")
    assert confirmation["To"] == ref_a.email
    assert confirmation["Subject"] == f"SVI – {ticket.number} transmis à l'équipe nationale"
    national = inbox.by_subject("à prendre en charge")
    assert national["To"] == ", ".join(TEAM)
    for msg in (confirmation, national):
        assert "ne peut plus valider ses demandes" in msg.get_content()
        assert f"https://svi.example.gouv.fr/tickets/{ticket.number}" in msg.get_content()
    assert "ref.a@example.gouv.fr transmet le ticket" in national.get_content()
    assert [e.data["template"] for e in _email_events(db, ticket)][-2:] == [
        "escalation_referent", "escalation_national"]


def test_the_requester_gets_the_acknowledgement_and_the_closure(mail_app, db, clock, inbox):
    ref_a, *_ = _referents(db)
    row = factories.solicitation_row(db, departement="93", thematique="usage", motif="saisie")
    ticket = operations.from_solicitation(db, Actor.user(ref_a), row, "Doublon à fusionner",
                                          requester_email="agent@example.gouv.fr")
    db.commit()
    ack = inbox.by_subject("est enregistrée")
    assert ack["To"] == "agent@example.gouv.fr"
    assert ticket.number in ack["Subject"] and "Doublon" not in ack.get_content()
    operations.close(db, Actor.user(ref_a), ticket, ClosureStatus.by_referent, by=ref_a)
    db.commit()
    closed = inbox.by_subject("est close")
    assert "(clos par le référent)" in closed.get_content()


# --- the admins' templates ---------------------------------------------------------------------

def test_templates_are_checked_like_prompts_and_used(mail_app, db, clock, inbox):
    shipped = emails.template("new_voicemail")
    body = shipped.body.replace("{lien}", "")
    with pytest.raises(emails.EmailTemplateError, match=r"Valeur manquante : \{lien\}"):
        emails.set_template(db, ADMIN, "new_voicemail", shipped.subject, body)
    with pytest.raises(emails.EmailTemplateError, match=r"Valeur inconnue : \{telephone\}"):
        emails.set_template(db, ADMIN, "new_voicemail", shipped.subject + " {telephone}",
                            shipped.body)
    with pytest.raises(emails.EmailTemplateError, match="accolades mal formées"):
        emails.set_template(db, ADMIN, "new_voicemail", shipped.subject, shipped.body + " {")
    with pytest.raises(emails.EmailTemplateError, match=r"n'est pas une valeur"):
        emails.set_template(db, ADMIN, "new_voicemail", shipped.subject,
                            shipped.body + " {numero!r}")
    with pytest.raises(emails.EmailTemplateError, match=r"U\+001B"):
        emails.set_template(db, ADMIN, "new_voicemail", shipped.subject, shipped.body + "\x1b")
    with pytest.raises(emails.EmailTemplateError, match="objet vide"):
        emails.set_template(db, ADMIN, "new_voicemail", " ", shipped.body)
    with pytest.raises(emails.EmailTemplateError, match="modèle de courriel inconnu"):
        emails.set_template(db, ADMIN, "sauvegarde", "x", "y")
    assert emails.set_template(db, ADMIN, "new_voicemail", "Message vocal {numero}",
                               "Écoutez-le : {lien}\r\n{departement} {appelant} {date} {duree} "
                               "{motif} {echeance}")
    db.commit()
    assert not emails.set_template(db, ADMIN, "new_voicemail", "Message vocal {numero}",
                                   "Écoutez-le : {lien}\n{departement} {appelant} {date} {duree} "
                                   "{motif} {echeance}\n")  # the same: nothing to change
    [info] = [i for i in emails.overview(db) if i.template.name == "new_voicemail"]
    assert info.overridden and info.subject == "Message vocal {numero}"
    _referents(db)
    ticket = operations.from_voicemail(db, factories.call(db, departement="93"))
    db.commit()
    [msg] = inbox.messages()
    assert msg["Subject"] == f"Message vocal {ticket.number}"
    assert msg.get_content().startswith(
        f"Écoutez-le : https://svi.example.gouv.fr/tickets/{ticket.number}\n93 – Seine-Saint-Denis")
    assert emails.restore_template(db, ADMIN, "new_voicemail")
    db.commit()
    assert emails.render(db, "new_voicemail", {"numero": "T-1"})[0].startswith(
        "SVI – nouveau message vocal T-1")
    summaries = list(db.scalars(select(AuditEntry.summary).where(AuditEntry.entity == "courriel")
                                .order_by(AuditEntry.id)))
    assert summaries == ["Courriel « new_voicemail » modifié",
                         "Courriel « new_voicemail » : texte d'origine rétabli"]


# --- jobs --------------------------------------------------------------------------------------

def _resolved(db, clock, at: str, *, requester: str | None = None) -> Ticket:
    """A ticket resolved at `at` (Paris)."""
    clock.set(at)
    user = db.scalars(select(User).where(User.email == "ref.a@example.gouv.fr")
                      ).one()
    row = factories.solicitation_row(db, departement="93", thematique="usage", motif="saisie",
                                     occurred_at=clock())
    ticket = operations.from_solicitation(db, Actor.user(user), row, "À traiter",
                                          requester_email=requester)
    operations.take(db, Actor.user(user), ticket, user)
    operations.set_status(db, Actor.user(user), ticket, TicketStatus.resolved)
    db.commit()
    return ticket


def test_auto_closure_closes_exactly_the_right_tickets(mail_app, db, clock, inbox):
    ref_a, *_ = _referents(db)
    actor = Actor.user(ref_a)
    eight_days = _resolved(db, clock, "2026-12-13T10:00", requester="agent@example.gouv.fr")
    seven_days = _resolved(db, clock, "2026-12-14T03:00")      # exactly 7 days before the run
    almost = _resolved(db, clock, "2026-12-14T03:01")          # one minute short
    reopened = _resolved(db, clock, "2026-12-01T10:00")
    clock.set("2026-12-18T10:00")
    operations.set_status(db, actor, reopened, TicketStatus.in_progress)
    operations.set_status(db, actor, reopened, TicketStatus.resolved)  # resolved again on the 18th
    confirmed = _resolved(db, clock, "2026-12-02T10:00")
    operations.close(db, actor, confirmed, ClosureStatus.confirmed)
    clock.set("2026-12-01T10:00")
    waiting = operations.from_voicemail(db, factories.call(db, departement="93"))
    operations.take(db, actor, waiting, ref_a)
    operations.set_status(db, actor, waiting, TicketStatus.waiting)
    db.commit()
    inbox.envelopes.clear()

    clock.set("2026-12-21T03:00")
    result = jobs.tickets_auto_close(mail_app)
    assert result.status == "done", result.message
    assert "2 ticket(s) clos (résolus depuis 7 jour(s) sans confirmation)" in result.message
    status = lambda t: db.get(Ticket, t.id)  # noqa: E731
    db.expire_all()
    for ticket in (eight_days, seven_days):
        found = status(ticket)
        assert (found.status, found.closure_status) == (TicketStatus.closed,
                                                        ClosureStatus.delay_exceeded)
        assert found.closed_at == datetime(2026, 12, 21, 3, 0, tzinfo=PARIS)
        assert found.events[-1 if ticket is seven_days else -2].actor == "système:clôture automatique"
    assert status(almost).status is TicketStatus.resolved
    assert status(reopened).status is TicketStatus.resolved
    assert status(confirmed).closure_status is ClosureStatus.confirmed
    assert status(waiting).status is TicketStatus.waiting
    # The requester of the one with an address is told.
    [msg] = inbox.messages()
    assert msg["To"] == "agent@example.gouv.fr" and "(délai dépassé)" in msg.get_content()
    # Once a day.
    assert jobs.tickets_auto_close(mail_app).status == "skipped"
    clock.set("2026-12-22T03:00")
    assert "1 ticket(s) clos" in jobs.tickets_auto_close(mail_app).message
    db.expire_all()
    assert status(almost).closure_status is ClosureStatus.delay_exceeded
    assert status(reopened).status is TicketStatus.resolved
    # The setting decides.
    mail_app.config["TICKETS_AUTO_CLOSE_DAYS"] = 3
    clock.set("2026-12-23T03:00")
    assert "1 ticket(s) clos (résolus depuis 3 jour(s)" in jobs.tickets_auto_close(mail_app).message


def test_daily_digest_to_each_departement_referents(mail_app, db, clock, inbox):
    ref_a, ref_b, _, _ = _referents(db)
    clock.set("2026-12-21T09:40")
    callback = operations.from_callback(db, factories.call(db, departement="93"), "+33612345678")
    voicemail = operations.from_voicemail(db, factories.call(db, departement="93"))
    clock.set("2026-12-21T14:10")
    taken = operations.from_voicemail(db, factories.call(db, departement="93"))
    operations.take(db, Actor.user(ref_a), taken, ref_a)
    closed = operations.from_callback(db, factories.call(db, departement="93"), "+33699999999")
    operations.close(db, Actor.user(ref_a), closed, ClosureStatus.by_referent)
    lonely = operations.from_voicemail(db, factories.call(db, departement="2A"))
    db.commit()
    inbox.envelopes.clear()

    clock.set("2026-12-22T07:30")
    result = jobs.tickets_digest(mail_app)
    assert result.status == "done", result.message
    assert "1 récapitulatif(s) envoyé(s) ; sans référent actif : 2A" in result.message
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == [ref_a.email, ref_b.email]
    [msg] = inbox.messages()
    assert msg["Subject"] == "SVI – tickets ouverts du 22/12/2026 (93 – Seine-Saint-Denis)"
    body = msg.get_content()
    rappels, messages, retards = (body.split("Demandes de rappel :")[1].split("Messages vocaux :")[0],
                                  body.split("Messages vocaux :")[1].split("Non pris en compte")[0],
                                  body.split("Non pris en compte")[1])
    assert callback.number in rappels and closed.number not in body
    assert voicemail.number in messages and taken.number in messages
    assert f"en cours, attribué à {ref_a.email}" in messages
    # Late: created 09:40 (due 10:40); the taken one is not late.
    assert callback.number in retards and voicemail.number in retards
    assert taken.number not in retards and lonely.number not in body
    assert "+33612345678" not in body
    assert "https://svi.example.gouv.fr/tickets?departement=93" in body
    assert jobs.tickets_digest(mail_app).status == "skipped"


def test_a_digest_that_could_not_be_sent_is_sent_by_the_next_run(mail_app, db, clock, inbox):
    _referents(db)
    operations.from_voicemail(db, factories.call(db, departement="93"))
    db.commit()
    inbox.envelopes.clear()
    port = mail_app.config["SMTP_PORT"]
    mail_app.config["SMTP_PORT"] = mailserver.free_port()
    clock.set("2026-12-22T07:30")
    failed = jobs.tickets_digest(mail_app)
    assert failed.status == "failed" and "impossible via 127.0.0.1" in failed.message
    mail_app.config["SMTP_PORT"] = port
    assert jobs.tickets_digest(mail_app).status == "done"
    assert len(inbox.envelopes) == 1


def test_recipients_refused_by_the_smtp_server_show_in_the_ticket_history(app, db, clock,
                                                                           tmp_path):
    with mailserver.running() as picky:
        picky.refuse.add("ref.b@example.gouv.fr")
        app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=picky.port,
                          MAIL_OUTBOX_DIR=str(tmp_path / "outbox"))
        _referents(db)
        call = factories.call(db, departement="93")
        ticket = operations.from_callback(db, call, "+33612345678")
        db.commit()
        assert emails.drain(app)
    [envelope] = picky.envelopes
    assert envelope.rcpt_tos == ["ref.a@example.gouv.fr"]
    db.expire_all()
    [sent] = _email_events(db, ticket)
    assert sent.data["sent"] is True and sent.data["refused"] == ["ref.b@example.gouv.fr"]
    assert sent.text == ("Courriel « nouvelle demande de rappel » envoyé à 1 destinataire. "
                         "Refusé par le serveur de messagerie pour : ref.b@example.gouv.fr.")
