"""A referent of 93 in a real browser: qualifies a call with two motifs, then finds both rows in
the workbook downloaded from « Classeurs »; the list and detail pages pass axe-core."""

from __future__ import annotations

from datetime import UTC, datetime

import openpyxl
import pytest
from playwright.sync_api import expect

from core import db as core_db
from tests import factories
from tests.browser.conftest import assert_accessible, login
from tracking.columns import INDEX

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
