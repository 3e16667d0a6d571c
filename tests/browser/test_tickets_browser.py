"""Tickets in a real browser: a referent of 93 listens to a voicemail (streamed from the Twilio
stand-in through the service), takes the ticket, comments, resolves and closes it; a referent
escalates a ticket and the national team finds it; the incidents and email-template pages. Every
page passes axe-core."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from core import db as core_db
from devtools import liveserver
from devtools.twilio_standin import TwilioStandin
from tests import factories
from tests.browser.conftest import assert_accessible, login
from tickets import operations

pytestmark = pytest.mark.browser

REFERENT = "referent93@example.gouv.fr"
NATIONAL = "national@example.gouv.fr"
ADMIN = "admin@example.gouv.fr"


def _voicemail(live_server, recording_url: str) -> str:
    """A voicemail left on Monday 21/12/2026 at 09:30 (Paris) in 93: its ticket's number."""
    with live_server.app.app_context():
        session = core_db.session()
        call = factories.call(session, departement="93", thematique="usage",
                              started_at=datetime(2026, 12, 21, 8, 30, tzinfo=UTC),
                              recording_url=recording_url, recording_seconds=3)
        ticket = operations.from_voicemail(session, call, at=call.started_at)
        number = ticket.number
        core_db.commit()
    return number


def test_referent_listens_takes_comments_resolves_and_closes_a_voicemail_ticket(page, live_server):
    live_server.user(REFERENT, "referent", departements=["93"], name="Dominique Référente")
    # The stand-in checks the webhook key the live server already uses as its auth token.
    with TwilioStandin(auth_token=liveserver.AUTH_TOKEN) as twilio:
        live_server.app.config.update(twilio.settings)
        sid = twilio.add()
        number = _voicemail(live_server, twilio.recording_url(sid))
        login(page, REFERENT)
        page.get_by_role("link", name="Tickets", exact=True).first.click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Tickets")
        row = page.locator("#tickets tbody tr").first
        expect(row).to_contain_text(number)
        expect(row).to_contain_text("message vocal")
        expect(row).to_contain_text("21/12/2026 09:30")  # created, local time
        expect(row).to_contain_text("21/12/2026 10:30")  # one working hour later
        assert_accessible(page)

        row.get_by_role("link", name=number).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Ticket {number}")
        audio = page.locator("audio")
        src = audio.get_attribute("src")
        assert src == f"/tickets/{number}/enregistrement"
        assert "twilio" not in page.content().lower().replace("depuis twilio", "")
        # The browser loads the recording through the service…
        duration = audio.evaluate("""a => new Promise((resolve, reject) => {
            a.addEventListener('loadedmetadata', () => resolve(a.duration));
            a.addEventListener('error', () => reject(new Error('audio: ' + a.error.code)));
            a.preload = 'auto';
            a.load();
        })""")
        assert audio.evaluate("a => a.readyState") >= 1
        assert 2.5 < duration < 3.5, duration
        response = page.request.get(src)
        assert response.status == 200 and response.headers["content-type"] == "audio/mpeg"
        assert response.headers["cache-control"] == "no-store"
        # …which fetched it from "Twilio" with the account's credentials.
        assert twilio.seen("GET") and all(r.authorized for r in twilio.seen("GET"))
        assert_accessible(page)

        page.get_by_role("button", name="Prendre en charge").click()
        expect(page.get_by_role("status")).to_contain_text("Vous avez pris en charge")
        expect(page.locator("#informations")).to_contain_text("Dominique Référente")
        page.get_by_label("Commentaire", exact=False).first.fill("Rappelé : l'usager a retrouvé son accès.")
        page.get_by_role("button", name="Ajouter le commentaire").click()
        expect(page.locator("#historique")).to_contain_text("l'usager a retrouvé son accès")
        page.get_by_label("Nouveau statut").select_option(label="Résolu")
        page.get_by_role("button", name="Changer le statut").click()
        expect(page.locator("#informations")).to_contain_text("résolu")
        assert_accessible(page)
        page.get_by_label("Statut de clôture").select_option(label="Clos par le référent")
        page.get_by_role("button", name="Clore le ticket").click()
        expect(page.get_by_role("status")).to_contain_text("clos (clos par le référent)")
        history = page.locator("#historique")
        for text in ("Attribué à", "Statut : nouveau → en cours", "Statut : en cours → résolu",
                     "Clos : clos par le référent", REFERENT):
            expect(history).to_contain_text(text)
        expect(page.get_by_role("button", name="Prendre en charge")).to_have_count(0)
        assert_accessible(page)


def test_referent_escalates_and_the_national_team_sees_the_ticket(page, browser, live_server):
    live_server.user(REFERENT, "referent", departements=["93"])
    live_server.user(NATIONAL, "national", name="Équipe nationale")
    number = _voicemail(live_server, None)
    login(page, REFERENT)
    page.goto(f"/tickets/{number}")
    page.get_by_role("button", name="Escalader à l'équipe nationale").click()
    expect(page.locator("#erreurs")).to_contain_text("reformulez la demande")
    assert_accessible(page)
    page.get_by_label("Description reformulée pour l'équipe nationale").fill(
        "Plusieurs usagers du 93 ne reçoivent plus le code de connexion.")
    page.get_by_role("button", name="Escalader à l'équipe nationale").click()
    expect(page.get_by_role("status")).to_contain_text("transmis à l'équipe nationale")

    team = liveserver.new_page(browser, live_server.url)
    try:
        login(team, NATIONAL)
        team.get_by_role("link", name="Tickets", exact=True).first.click()
        row = team.locator("#tickets tbody tr").first
        expect(row).to_contain_text(number)
        expect(row).to_contain_text("équipe nationale")
        assert_accessible(team)
        row.get_by_role("link", name=number).click()
        expect(team.locator("#historique")).to_contain_text("ne reçoivent plus le code")
        expect(team.get_by_role("button", name="Clore le ticket")).to_be_visible()
        assert_accessible(team)
        team.get_by_role("link", name="Incidents", exact=True).first.click()
        team.get_by_label("Titre").fill("Codes de connexion non reçus")
        team.get_by_label("Département concerné").select_option("93")
        team.get_by_role("button", name="Ouvrir l'incident").click()
        expect(team.get_by_role("heading", level=1)).to_contain_text("Codes de connexion non reçus")
        team.get_by_label("Message annoncé aux appelants").fill(
            "Les codes de connexion n'arrivent plus ; nous y travaillons.")
        team.get_by_label("Fin de l'annonce (facultatif)").fill("2026-12-21T18:00")
        team.get_by_role("button", name="Enregistrer le message").click()
        expect(team.get_by_role("status")).to_contain_text("Message enregistré")
        expect(team.locator("main")).to_contain_text("jusqu'au 21/12/2026 18:00")
        assert_accessible(team)
        team.goto("/tickets/incidents/")
        assert_accessible(team)
    finally:
        team.context.close()


def test_admin_edits_an_email_template_and_a_ticket_is_created_from_a_call(page, live_server):
    live_server.user(ADMIN, "admin")
    with live_server.app.app_context():
        row = factories.solicitation_row(core_db.session(), departement="93", thematique="usage",
                                         occurred_at=datetime(2026, 12, 21, 8, tzinfo=UTC))
        reference = row.reference
    login(page, ADMIN)
    page.goto("/admin/courriels")
    assert_accessible(page)
    page.get_by_role("link", name="Nouveau message vocal").click()
    body = page.get_by_label("Texte", exact=False).first
    body.fill(body.input_value().replace("{lien}", ""))
    page.get_by_role("button", name="Enregistrer le courriel").click()
    expect(page.locator("#texte-erreur")).to_contain_text("{lien}")
    assert_accessible(page)

    page.goto(f"/appels/{reference}")
    assert_accessible(page)  # its « Créer un ticket » was once drawn as a lone « + »
    page.get_by_role("link", name="Créer un ticket").click()
    assert_accessible(page)
    page.get_by_label("Description de la demande").fill("Doublons à fusionner pour ce guichet.")
    page.get_by_role("button", name="Créer le ticket").click()
    expect(page.get_by_role("status")).to_contain_text("créé")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Ticket T-2026-")
