"""A referent of 93 in a real browser: qualifies a call with two motifs, then finds both rows in
the workbook downloaded from « Classeurs »; the list and detail pages pass axe-core."""

from __future__ import annotations

from datetime import UTC, datetime

import openpyxl
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core import db as core_db
from tests import factories
from tests.browser.conftest import assert_accessible, login
from tracking.columns import INDEX
from tracking.models import Channel, Solicitation, Source

pytestmark = pytest.mark.browser

REFERENT = "referent93@example.gouv.fr"


def test_referent_qualifies_a_call_with_two_motifs_and_finds_them_in_the_workbook(
        page, live_server, tmp_path):
    live_server.user(REFERENT, "referent", departements=["93"])
    with live_server.app.app_context():
        call = factories.call(core_db.session(), departement="93", thematique="usage",
                              started_at=datetime(2026, 12, 21, 8, 30, tzinfo=UTC),
                              wait_seconds=12, talk_seconds=95)
        call_id = call.id
    login(page, REFERENT)
    page.get_by_role("link", name="Mes appels").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mes appels")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("21/12/2026 09:30")
    expect(row).to_contain_text("À qualifier")
    assert_accessible(page)

    row.get_by_role("link").click()
    expect(page.locator("#deroule")).to_contain_text("Appel reçu de +336••••••78")
    assert_accessible(page)
    page.get_by_label("Thématique (motif 1)", exact=True).select_option(label="Usage du SI")
    page.get_by_label("Motif (motif 1)", exact=True).select_option(label="Traitement des doublons")
    page.get_by_label("Thématique (motif 2)", exact=True).select_option(label="Habilitations et comptes")
    page.get_by_label("Motif (motif 2)", exact=True).select_option(label="Création de compte")
    page.get_by_label("Commentaire").fill("doublon signalé, puis compte à créer")
    page.get_by_role("button", name="Enregistrer la qualification").click()
    expect(page.get_by_role("status")).to_contain_text("2 ligne(s)")
    expect(page.locator("table").first).to_contain_text("Création de compte")
    assert_accessible(page)

    page.get_by_role("link", name="Classeurs").first.click()
    with page.expect_download() as info:
        page.get_by_role("link", name="93 Seine-Saint-Denis (2026-Q4)").click()
    path = tmp_path / "93.xlsx"
    info.value.save_as(path)
    wb = openpyxl.load_workbook(path, read_only=True)
    sheet = next(ws for ws in wb.worksheets if ws.title.startswith("Historique"))
    rows = [r for r in sheet.iter_rows(min_row=2, values_only=True)
            if r[INDEX["N° d'appel"]] == call_id]
    assert sorted((r[INDEX["Thématique"]], r[INDEX["Motif"]]) for r in rows) == [
        ("Habilitations et comptes", "Création de compte"),
        ("Usage du SI", "Traitement des doublons")]


def test_referent_adds_an_email_solicitation_and_finds_it_in_the_list(page, live_server):
    live_server.user(REFERENT, "referent", departements=["93"])
    login(page, REFERENT)
    page.get_by_role("link", name="Mes appels").first.click()
    page.get_by_role("link", name="Ajouter une sollicitation").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ajouter une sollicitation")
    # Their only département is chosen for them.
    expect(page.get_by_label("Département", exact=True)).to_have_value("93")
    assert_accessible(page)
    page.get_by_label("Date", exact=True).fill("2026-12-18")
    page.get_by_label("Heure locale du département").fill("14:30")
    page.get_by_label("Canal", exact=True).select_option(label="Courriel")
    page.get_by_label("Thématique", exact=True).select_option(label="Habilitations et comptes")
    page.get_by_label("Motif", exact=True).select_option(label="Mot de passe et connexion")
    page.get_by_label("Commentaire").fill("courriel reçu : mot de passe perdu")
    page.get_by_role("button", name="Ajouter").click()
    expect(page.get_by_role("status")).to_contain_text("ajoutée")
    reference = page.get_by_role("status").inner_text().split("Sollicitation ")[1].split()[0]
    assert_accessible(page)

    page.get_by_role("link", name="Mes appels").first.click()
    row = page.locator("tbody tr", has_text=reference)
    expect(row).to_have_count(1)
    for text in ("18/12/2026 14:30", "93", "Courriel", "Habilitations et comptes / Mot de passe et connexion"):
        expect(row).to_contain_text(text)
    expect(row).not_to_contain_text("À qualifier")
    assert_accessible(page)
    with live_server.app.app_context():
        stored = core_db.session().scalars(
            select(Solicitation).where(Solicitation.reference == reference)).one()
        assert (stored.departement_code, stored.channel, stored.source, stored.call_id) == (
            "93", Channel.email, Source.manual, None)
        # 14:30 in Paris, in winter, is 13:30 UTC.
        assert stored.occurred_at.replace(tzinfo=UTC) == datetime(2026, 12, 18, 13, 30, tzinfo=UTC)
        assert stored.comment == "courriel reçu : mot de passe perdu"
        core_db.rollback()


def _qualifications(live_server) -> list[tuple]:
    """Every solicitation row as stored: what an import could change."""
    with live_server.app.app_context():
        rows = core_db.session().execute(select(
            Solicitation.reference, Solicitation.departement_code, Solicitation.thematique_id,
            Solicitation.motif_id, Solicitation.sous_motif_id, Solicitation.comment,
            Solicitation.resolved_first_level, Solicitation.escalated)
            .order_by(Solicitation.reference)).all()
        core_db.rollback()
    return [tuple(r) for r in rows]


def test_referent_imports_a_workbook_with_a_bad_cell_and_sees_it(page, live_server, tmp_path):
    live_server.user(REFERENT, "referent", departements=["93"])
    with live_server.app.app_context():
        session = core_db.session()
        first, second = (factories.call(session, departement="93", thematique="usage",
                                        started_at=datetime(2026, 12, day, 9, 0, tzinfo=UTC)).id
                         for day in (14, 15))
        factories.call(session, departement="75", started_at=datetime(2026, 12, 15, 9, tzinfo=UTC))
    before = _qualifications(live_server)
    login(page, REFERENT)
    page.get_by_role("link", name="Classeurs").first.click()
    with page.expect_download() as info:
        page.get_by_role("link", name="93 Seine-Saint-Denis (2026-Q4)").click()
    path = tmp_path / "93.xlsx"
    info.value.save_as(path)

    # In a spreadsheet: the first call is qualified properly, the second with a motif that is
    # not in the list. The file must be refused as a whole, the good row included.
    wb = openpyxl.load_workbook(path)
    ws = wb["Historique des sollicitations"]
    rows = {ws.cell(r, INDEX["N° d'appel"] + 1).value: r for r in range(2, ws.max_row + 1)}
    assert set(rows) == {first, second}
    ws.cell(rows[first], INDEX["Motif"] + 1).value = "Traitement des doublons"
    ws.cell(rows[second], INDEX["Motif"] + 1).value = "Motif qui n'existe pas"
    edited = tmp_path / "93-complete.xlsx"
    wb.save(edited)

    page.get_by_role("link", name="Mes appels").first.click()
    page.get_by_role("link", name="Importer un classeur").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Importer un classeur")
    assert_accessible(page)
    page.get_by_label("Classeur complété (.xlsx)").set_input_files(edited)
    page.get_by_role("button", name="Importer").click()
    expect(page.locator("#import-erreurs")).to_contain_text(
        "Import refusé, rien n'a été modifié : 1 erreur(s)")
    refused = page.locator("table", has_text="Cellules refusées").locator("tbody tr")
    expect(refused).to_have_count(1)
    expect(refused.locator("td")).to_have_text([
        "Historique des sollicitations", str(rows[second]), "Motif",
        "« Motif qui n'existe pas » n'est pas un motif de « Usage du SI »"])
    assert_accessible(page)
    assert _qualifications(live_server) == before  # nothing written, not even the good row


def test_referent_of_93_cannot_reach_75_by_typing_urls(page, live_server):
    live_server.user(REFERENT, "referent", departements=["93"])
    at = datetime(2026, 12, 15, 9, 0, tzinfo=UTC)
    with live_server.app.app_context():
        session = core_db.session()
        ours = factories.call(session, departement="93", started_at=at)
        theirs = factories.call(session, departement="75", started_at=at)
        email = factories.solicitation_row(session, departement="75", occurred_at=at)
        refs = dict(session.execute(select(Solicitation.call_id, Solicitation.reference)
                                    .where(Solicitation.call_id.is_not(None))).all())
        ours_ref, theirs_ref, email_ref = refs[ours.id], refs[theirs.id], email.reference
        core_db.rollback()
    login(page, REFERENT)

    # The list filtered on 75: the filter is refused, and only 93's rows are listed.
    response = page.goto("/appels/?departement=75")
    assert response.status == 200
    expect(page.get_by_label("Département", exact=True)).to_have_attribute("aria-invalid", "true")
    departements = page.locator("tbody tr td:nth-child(2)")
    expect(departements).to_have_text(["93"])
    expect(page.locator("main")).to_contain_text(ours_ref)
    for ref in (theirs_ref, email_ref):
        expect(page.locator("main")).not_to_contain_text(ref)
    assert_accessible(page)

    # A 75 call's and a 75 email's detail, a 75 workbook, 75's dashboard: refused.
    for url in (f"/appels/{theirs_ref}", f"/appels/{email_ref}",
                "/classeurs/2026-Q4/departement-75.xlsx", "/classeurs/2026-Q4/national.xlsx",
                "/tableau-de-bord/75"):
        response = page.goto(url)
        assert response.status == 403, url
        expect(page.get_by_role("heading", level=1)).to_have_text("Accès refusé")
        expect(page.locator("main")).not_to_contain_text("Paris")
        assert_accessible(page)
    # Their own are open to them.
    assert page.goto(f"/appels/{ours_ref}").status == 200
    assert page.goto("/tableau-de-bord/93").status == 200
