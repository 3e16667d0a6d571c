"""« Tickets » pages: who reads and acts on which ticket, the workflow through the forms,
append-only comments, escalation and its two emails, a ticket from a solicitation, the
voicemail streamed through the service, incidents and their phone message, the admins' email
templates. On SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from accounts.models import Role
from devtools.twilio_standin import TwilioStandin, silent_mp3
from tests import factories
from tests.webclient import csrf_token, login, make_user
from tickets import emails, operations
from tickets.models import ClosureStatus, EmailTemplate, Incident, Ticket, TicketKind, TicketStatus

TEAM = "equipe.nationale@example.gouv.fr"


@pytest.fixture(autouse=True)
def outbox(app, tmp_path):
    app.config["MAIL_OUTBOX_DIR"] = str(tmp_path / "outbox")
    app.config["NATIONAL_TEAM_EMAILS"] = TEAM
    return tmp_path / "outbox"


def _messages(outbox, skip=()):
    """The emails written to the outbox (those of `skip`, an earlier result, left out)."""
    seen = {m["Message-ID"] for m in skip}
    found = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
             for p in sorted(outbox.glob("*.eml"))] if outbox.exists() else []
    return [m for m in found if m["Message-ID"] not in seen]


def _client(app, db, email_address, role, departements=()):
    make_user(db, email_address, role, departements=departements)
    client = app.test_client()
    assert login(client, email_address).status_code == 302
    return client


@pytest.fixture
def ref93(app, db):
    return _client(app, db, "ref93@example.gouv.fr", Role.referent, ["93"])


@pytest.fixture
def ref75(app, db):
    return _client(app, db, "ref75@example.gouv.fr", Role.referent, ["75"])


@pytest.fixture
def national(app, db):
    return _client(app, db, "nat@example.gouv.fr", Role.national)


def _voicemail(db, clock, departement="93", recording_url="https://api.twilio.com/2010-04-01/"
               "Accounts/AC00000000000000000000000000000000/Recordings/RE0123456789abcdef"):
    call = factories.call(db, departement=departement, started_at=clock(),
                          recording_url=recording_url, recording_seconds=42)
    ticket = operations.from_voicemail(db, call, at=clock())
    db.commit()
    return ticket


def _post(client, url, data, page):
    return client.post(url, data={"csrf_token": csrf_token(client, page), **data})


def _reload(db, ticket) -> Ticket:
    db.expire_all()
    return db.get(Ticket, ticket.id)


def test_referent_lists_and_reads_only_their_departements_tickets(app, db, clock, ref93):
    mine = _voicemail(db, clock, "93")
    other = _voicemail(db, clock, "75")
    page = ref93.get("/tickets/").get_data(as_text=True)
    assert mine.number in page and other.number not in page
    assert "Message vocal (93 – Seine-Saint-Denis)" in page
    assert ref93.get(f"/tickets/{mine.number}").status_code == 200
    # Another département's ticket: 403 for reading and for every action.
    assert ref93.get(f"/tickets/{other.number}").status_code == 403
    assert ref93.get(f"/tickets/{other.number}/enregistrement").status_code == 403
    token = csrf_token(ref93, f"/tickets/{mine.number}")
    for action, data in (("prendre", {}), ("statut", {"statut": "in_progress"}),
                         ("commentaires", {"commentaire": "intrus"}),
                         ("escalader", {"description": "intrus"}),
                         ("clore", {"cloture": "by_referent"}), ("incident", {"incident": ""})):
        response = ref93.post(f"/tickets/{other.number}/{action}",
                              data={"csrf_token": token, **data})
        assert response.status_code == 403, action
    # Only « created » (and its email's outcome): nothing was done.
    assert [e.kind for e in _reload(db, other).events if e.kind != "email"] == ["created"]
    # Unknown ticket: 404; a lower-case number is the same ticket.
    assert ref93.get("/tickets/T-2026-999999").status_code == 404
    assert ref93.get(f"/tickets/{mine.number.lower()}").status_code == 302
    # A filter naming another département is a field error, and shows nothing of it.
    page = ref93.get("/tickets/?departement=75").get_data(as_text=True)
    assert other.number not in page and "Le formulaire contient 1 erreur" in page


def test_list_filters_late_badge_local_time_and_email_links(app, db, clock, ref93):
    ticket = _voicemail(db, clock, "93")  # Monday 21/12/2026 10:00, due at 11:00
    page = ref93.get("/tickets/").get_data(as_text=True)
    assert "21/12/2026 10:00" in page and "21/12/2026 11:00" in page and "en retard" not in page
    clock.set("2026-12-21T11:30")
    page = ref93.get("/tickets/?en_retard=y").get_data(as_text=True)
    assert ticket.number in page and "en retard</p>" in page
    assert "1 ticket en retard" in page
    # The links of the emails: the ticket, and the list of a département (through a redirect).
    assert ref93.get(f"/tickets/{ticket.number}").status_code == 200
    response = ref93.get("/tickets?departement=93")
    assert response.status_code == 308 and response.headers["Location"].endswith(
        "/tickets/?departement=93")
    assert ticket.number in ref93.get("/tickets/?departement=93").get_data(as_text=True)
    # Filters: kind, status, assigned to me.
    assert ticket.number not in ref93.get("/tickets/?type=callback").get_data(as_text=True)
    assert ticket.number not in ref93.get("/tickets/?statut=closed").get_data(as_text=True)
    assert ticket.number not in ref93.get("/tickets/?a_moi=y").get_data(as_text=True)
    # Overseas: the deadline in the département's own time (La Réunion, UTC+4).
    clock.set("2026-12-21T08:00+04:00")
    reunion = _voicemail(db, clock, "974")
    admin = _client(app, db, "admin@example.gouv.fr", Role.admin)
    page = admin.get(f"/tickets/{reunion.number}").get_data(as_text=True)
    assert "21/12/2026 08:00" in page


def test_pages_cut_by_keyset(app, db, clock, ref93, monkeypatch):
    from web import ticket_pages
    monkeypatch.setattr(ticket_pages, "PAGE_SIZE", 2)
    tickets = [_voicemail(db, clock, "93") for _ in range(3)]
    first = ref93.get("/tickets/").get_data(as_text=True)
    assert tickets[2].number in first and tickets[1].number in first
    assert tickets[0].number not in first and "Page suivante" in first
    second = ref93.get(f"/tickets/?apres={tickets[1].id}").get_data(as_text=True)
    assert tickets[0].number in second and tickets[1].number not in second
    assert "Page suivante" not in second


def test_referent_takes_comments_resolves_and_closes(app, db, clock, ref93):
    ticket = _voicemail(db, clock, "93")
    page = f"/tickets/{ticket.number}"
    assert _post(ref93, f"{page}/prendre", {}, page).status_code == 302
    ticket = _reload(db, ticket)
    assert ticket.status is TicketStatus.in_progress
    assert ticket.assigned_to.email == "ref93@example.gouv.fr" and ticket.taken_at is not None
    response = _post(ref93, f"{page}/commentaires", {"commentaire": "Rappelé, message laissé"}, page)
    assert response.status_code == 302
    # Only the moves the workflow allows are offered; another one is a field error.
    html = ref93.get(page).get_data(as_text=True)
    assert 'value="waiting"' in html and 'value="resolved"' in html and 'value="new"' not in html
    response = _post(ref93, f"{page}/statut", {"statut": "new"}, page)
    assert response.status_code == 400 and 'id="statut-erreur"' in response.get_data(as_text=True)
    assert _reload(db, ticket).status is TicketStatus.in_progress
    assert _post(ref93, f"{page}/statut", {"statut": "resolved"}, page).status_code == 302
    # The referent may not close « par l'équipe nationale ».
    assert _post(ref93, f"{page}/clore", {"cloture": "by_national"}, page).status_code == 400
    response = _post(ref93, f"{page}/clore", {"cloture": "by_referent", "note": "Réglé"}, page)
    assert response.status_code == 302
    ticket = _reload(db, ticket)
    assert ticket.status is TicketStatus.closed
    assert ticket.closure_status is ClosureStatus.by_referent
    assert ticket.solicitation.resolved_first_level is True
    kinds = [(e.kind, e.actor) for e in ticket.events]
    assert ("comment", "utilisateur:ref93@example.gouv.fr") in kinds
    assert kinds[-1] == ("closed", "utilisateur:ref93@example.gouv.fr")
    html = ref93.get(page).get_data(as_text=True)
    assert "Rappelé, message laissé" in html and "Clos : clos par le référent. Réglé" in html
    assert "Ce ticket est clos" in html and "Prendre en charge" not in html


def test_comments_are_append_only(app, db, clock, ref93):
    ticket = _voicemail(db, clock, "93")
    page = f"/tickets/{ticket.number}"
    for text in ("Premier", "Second"):
        assert _post(ref93, f"{page}/commentaires", {"commentaire": text}, page).status_code == 302
    comments = [e for e in _reload(db, ticket).events if e.kind == "comment"]
    assert [c.text for c in comments] == ["Premier", "Second"]
    # No route edits or deletes a comment: every method but POST on the comments is refused.
    for method in ("PUT", "PATCH", "DELETE"):
        assert ref93.open(f"{page}/commentaires", method=method).status_code == 405
    assert ref93.open(f"/tickets/{ticket.number}/commentaires/{comments[0].id}",
                      method="DELETE").status_code in (404, 405)
    # An empty comment is a field error; a control character is refused.
    response = _post(ref93, f"{page}/commentaires", {"commentaire": "  "}, page)
    assert response.status_code == 400 and 'id="commentaire-erreur"' in response.get_data(as_text=True)
    response = _post(ref93, f"{page}/commentaires", {"commentaire": "a\x00b"}, page)
    assert response.status_code == 400
    assert [e.text for e in _reload(db, ticket).events if e.kind == "comment"] == ["Premier", "Second"]


def test_escalation_by_the_referent_sends_both_emails_and_the_team_sees_it(
        app, db, clock, ref93, ref75, national, outbox):
    ticket = _voicemail(db, clock, "93")
    before = _messages(outbox)
    page = f"/tickets/{ticket.number}"
    # A referent of another département: refused (403), nothing sent.
    response = ref75.post(f"{page}/escalader", data={
        "csrf_token": csrf_token(ref75, "/tickets/"), "description": "intrus"})
    assert response.status_code == 403
    # The national team may read it but not escalate it.
    response = national.post(f"{page}/escalader", data={
        "csrf_token": csrf_token(national, "/tickets/"), "description": "non"})
    assert response.status_code == 403
    assert _messages(outbox, before) == [] and not _reload(db, ticket).national
    # Not yet escalated: not in the national team's default list.
    assert ticket.number not in national.get("/tickets/").get_data(as_text=True)
    # Without a description: a field error.
    response = _post(ref93, f"{page}/escalader", {"description": ""}, page)
    assert response.status_code == 400 and 'id="description-erreur"' in response.get_data(as_text=True)
    response = _post(ref93, f"{page}/escalader",
                     {"description": "L'usager ne peut plus se connecter depuis lundi."}, page)
    assert response.status_code == 302
    ticket = _reload(db, ticket)
    assert ticket.national and ticket.solicitation.escalated is True
    sent = _messages(outbox, before)
    assert sorted(str(m["To"]) for m in sent) == sorted(["ref93@example.gouv.fr", TEAM])
    assert all("L'usager ne peut plus se connecter depuis lundi." in m.get_content() for m in sent)
    # The national team finds it in its list and may now handle it; the escalation form is gone.
    listing = national.get("/tickets/").get_data(as_text=True)
    assert ticket.number in listing and "équipe nationale" in listing
    html = national.get(page).get_data(as_text=True)
    assert "ne peut plus se connecter depuis lundi." in html
    assert "Escalader" not in html and "Clore le ticket" in html
    html = ref93.get(page).get_data(as_text=True)
    assert "Escalader" not in html  # already national


def test_voicemail_is_streamed_through_the_service(app, db, clock, ref93):
    audio = silent_mp3(2)
    with TwilioStandin(auth_token="standin-token") as twilio:
        app.config.update(twilio.settings)
        sid = twilio.add(audio=audio)
        ticket = _voicemail(db, clock, "93", recording_url=twilio.recording_url(sid))
        page = ref93.get(f"/tickets/{ticket.number}").get_data(as_text=True)
        assert f'src="/tickets/{ticket.number}/enregistrement"' in page
        assert "api.twilio.com" not in page and sid not in page and twilio.url not in page
        response = ref93.get(f"/tickets/{ticket.number}/enregistrement")
        assert response.status_code == 200 and response.mimetype == "audio/mpeg"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.get_data() == audio
        assert [r.authorized for r in twilio.seen("GET")] == [True]
        # Gone at Twilio: a French page, never the address.
        twilio.deleted.add(sid)
        response = ref93.get(f"/tickets/{ticket.number}/enregistrement")
        body = response.get_data(as_text=True)
        assert response.status_code == 502 and "Enregistrement indisponible" in body
        assert "existe plus chez Twilio" in body and "api.twilio.com" not in body
        assert twilio.url not in body and sid not in body


def test_ticket_from_a_solicitation(app, db, clock, ref93, ref75, outbox):
    row = factories.solicitation_row(db, departement="93", thematique="usage",
                                     occurred_at=datetime(2026, 12, 21, 8, tzinfo=UTC))
    detail = ref93.get(f"/appels/{row.reference}").get_data(as_text=True)
    assert f'href="/tickets/depuis/{row.reference}"' in detail
    url = f"/tickets/depuis/{row.reference}"
    assert ref75.get(url).status_code == 403
    response = _post(ref93, url, {"description": "", "courriel": "pas-une-adresse"}, url)
    assert response.status_code == 400
    response = _post(ref93, url, {"description": "Doublons à fusionner",
                                  "courriel": "agent@example.fr"}, url)
    assert response.status_code == 302
    ticket = db.scalars(select(Ticket).where(Ticket.solicitation_id == row.id)).one()
    assert ticket.kind is TicketKind.referent and not ticket.national
    assert response.headers["Location"].endswith(f"/tickets/{ticket.number}")
    assert any(str(m["To"]) == "agent@example.fr" for m in _messages(outbox))
    # The form page lists it afterwards.
    assert ticket.number in ref93.get(url).get_data(as_text=True)
    # « Assistance technique »: a technical incident, straight to the national team.
    technical = factories.solicitation_row(db, departement="93", thematique="assistance_technique",
                                           occurred_at=datetime(2026, 12, 21, 8, tzinfo=UTC))
    url = f"/tickets/depuis/{technical.reference}"
    assert _post(ref93, url, {"description": "Le portail ne répond plus"}, url).status_code == 302
    ticket = db.scalars(select(Ticket).where(Ticket.solicitation_id == technical.id)).one()
    assert ticket.kind is TicketKind.incident and ticket.national


def test_incidents_and_their_phone_message(app, db, clock, national, ref93):
    assert ref93.get("/tickets/incidents/").status_code == 403
    url = "/tickets/incidents/"
    response = _post(national, url, {"titre": "", "departement": "93"}, url)
    assert response.status_code == 400
    response = _post(national, url, {"titre": "Panne du portail", "departement": "93",
                                     "description": "Le portail est inaccessible"}, url)
    assert response.status_code == 302
    incident = db.scalars(select(Incident)).one()
    page = f"/tickets/incidents/{incident.id}"
    assert response.headers["Location"].endswith(page)
    # An expiry already past is refused on its field.
    response = _post(national, f"{page}/message", {"message": "Le portail est en panne.",
                                                   "jusqu_au": "2026-12-20T10:00",
                                                   "action": "enregistrer"}, page)
    assert response.status_code == 400 and 'id="jusqu_au-erreur"' in response.get_data(as_text=True)
    response = _post(national, f"{page}/message", {"message": "Le portail est en panne.",
                                                   "jusqu_au": "2026-12-21T18:00",
                                                   "action": "enregistrer"}, page)
    assert response.status_code == 302
    db.expire_all()
    incident = db.get(Incident, incident.id)
    assert incident.message == "Le portail est en panne."
    assert incident.message_until == datetime(2026, 12, 21, 17, 0, tzinfo=UTC)
    assert "jusqu'au 21/12/2026 18:00" in national.get(url).get_data(as_text=True)
    # A ticket linked to it from its page, by the national team once escalated… or by an admin.
    ticket = _voicemail(db, clock, "93")
    tpage = f"/tickets/{ticket.number}"
    assert _post(ref93, f"{tpage}/incident", {"incident": str(incident.id)}, tpage).status_code == 302
    assert _reload(db, ticket).incident_id == incident.id
    # An incident of another département is neither offered nor accepted by its id.
    response = _post(national, url, {"titre": "Panne à Paris", "departement": "75"}, url)
    paris = db.scalars(select(Incident).where(Incident.departement_code == "75")).one()
    assert f'value="{paris.id}"' not in ref93.get(tpage).get_data(as_text=True)
    response = _post(ref93, f"{tpage}/incident", {"incident": str(paris.id)}, tpage)
    assert response.status_code == 400 and _reload(db, ticket).incident_id == incident.id
    assert ticket.number in national.get(page).get_data(as_text=True)
    # Withdrawn, then the incident closed.
    assert _post(national, f"{page}/message", {"action": "retirer"}, page).status_code == 302
    assert _post(national, f"{page}/clore", {}, page).status_code == 302
    db.expire_all()
    incident = db.get(Incident, incident.id)
    assert incident.message is None and incident.closed_at is not None


def test_admin_edits_an_email_template(app, db, admin):
    assert "Nouveau message vocal" in admin.get("/admin/courriels").get_data(as_text=True)
    url = "/admin/courriels/new_voicemail"
    page = admin.get(url).get_data(as_text=True)
    assert "{lien}" in page
    subject, body = emails.current(db, "new_voicemail")
    # A missing placeholder: the error is tied to the body field.
    response = _post(admin, url, {"objet": subject, "texte": body.replace("{lien}", ""),
                                  "action": "enregistrer"}, url)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="texte-erreur"' in html and "{lien}" in html
    # An unknown one in the subject: tied to the subject too.
    response = _post(admin, url, {"objet": subject + " {inconnu}", "texte": body,
                                  "action": "enregistrer"}, url)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="objet-erreur"' in html
    # An empty subject: on the subject.
    response = _post(admin, url, {"objet": "", "texte": body, "action": "enregistrer"}, url)
    assert response.status_code == 400 and 'id="objet-erreur"' in response.get_data(as_text=True)
    assert db.scalars(select(EmailTemplate)).all() == []
    response = _post(admin, url, {"objet": "Message vocal {numero} – {departement}",
                                  "texte": body, "action": "enregistrer"}, url)
    assert response.status_code == 302
    assert db.scalars(select(EmailTemplate.subject)).one() == "Message vocal {numero} – {departement}"
    assert "modifié" in admin.get("/admin/courriels").get_data(as_text=True)
    assert _post(admin, url, {"action": "retablir"}, url).status_code == 302
    db.expire_all()
    assert db.scalars(select(EmailTemplate)).all() == []
    assert admin.get("/admin/courriels/inconnu").status_code == 404


def test_menu_entries_by_role(app, db, ref93, national, admin):
    assert ">Tickets</a>" in ref93.get("/tickets/").get_data(as_text=True)
    assert ">Incidents</a>" not in ref93.get("/tickets/").get_data(as_text=True)
    html = national.get("/tickets/").get_data(as_text=True)
    assert 'href="/tickets/incidents/"' in html and 'href="/admin/courriels"' not in html
    assert 'href="/admin/courriels"' in admin.get("/tickets/").get_data(as_text=True)
