"""An admin's directory work in a real browser: edit a line, close a day and preview it, import
files (bad cells, then a good one after its preview); every main page passes axe-core."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core import db as core_db
from directory import io as directory_io
from directory import operations
from tests.browser.conftest import assert_accessible, login

pytestmark = pytest.mark.browser

ADMIN = "admin@example.gouv.fr"


@pytest.fixture
def admin_page(page, live_server):
    live_server.user(ADMIN, "admin")
    login(page, ADMIN)
    return page


def _snapshot(live_server, code):
    with live_server.app.app_context():
        return operations.snapshot(core_db.session(), code)


def test_admin_changes_a_line_of_93(admin_page, live_server):
    page = admin_page
    page.goto("/annuaire/93")
    assert_accessible(page)
    page.get_by_role("link", name="Modifier").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Modifier 93 Seine-Saint-Denis")
    assert_accessible(page)
    page.get_by_label("Numéro de la ligne 1", exact=True).fill("01 99 00 93 55")
    page.get_by_label("Numéro de la ligne 3", exact=True).fill("01 99")  # refused, named
    page.get_by_role("button", name="Enregistrer").click()
    error = page.locator("#lines-2-number-erreur")
    expect(error).to_contain_text("« 01 99 »")
    expect(page.get_by_label("Numéro de la ligne 3", exact=True)).to_have_attribute(
        "aria-describedby", "lines-2-number-erreur")
    assert [line.number for line in _snapshot(live_server, "93").lines][0] == "+33199009301"
    page.get_by_label("Numéro de la ligne 3", exact=True).fill("")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_role("status")).to_contain_text("Modifications enregistrées")
    expect(page.get_by_text("+33 1 99 00 93 55")).to_be_visible()
    assert _snapshot(live_server, "93").lines[0].number == "+33199009355"
    # The next call, placed from the simulator page, rings the new number.
    page.goto("/simulateur")
    page.get_by_label("Date et heure simulées (heure de Paris)").fill("2026-12-21T10:00")
    page.get_by_role("button", name="Appeler").click()
    for digits in ("93", "1", "1"):
        page.get_by_label("Touches tapées").fill(digits)
        page.get_by_role("button", name="Envoyer").click()
    expect(page.get_by_role("heading", name="Appel terminé")).to_be_visible()
    expect(page.locator("#transcription")).to_contain_text("Appel de +33199009355")


def test_admin_closes_75_for_a_day_and_the_preview_says_why(admin_page, live_server):
    page = admin_page
    page.goto("/annuaire/75/modifier")
    page.get_by_label("Du", exact=True).fill("2026-12-23")
    page.get_by_label("Motif, dit aux appelants").fill("déménagement du service")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_role("status")).to_contain_text("Modifications enregistrées")
    page.goto("/annuaire/75")
    page.locator("#contenu").get_by_role("link", name="Ce qu'entendront les appelants").click()
    page.get_by_label("Date").fill("2026-12-23")
    page.get_by_label("Heure locale du département").fill("10:00")
    page.get_by_role("button", name="Voir l'appel").click()
    expect(page.locator("#resultat")).to_contain_text("75 Paris, 23/12/2026 à 10:00")
    expect(page.get_by_text("Issue de l'appel : hors horaires")).to_be_visible()
    expect(page.locator(".svi-transcript")).to_contain_text("déménagement du service")
    assert_accessible(page)
    page.goto("/annuaire/75/annee")
    expect(page.get_by_text("fermeture exceptionnelle, déménagement du service")).to_be_visible()
    assert_accessible(page)


def _export_csv(live_server, path):
    with live_server.app.app_context():
        directory_io.write_file(path, directory_io.export_rows(core_db.session()))
    return path.read_text(encoding="utf-8-sig")


def test_admin_imports_a_file_with_two_bad_cells_then_a_good_one(admin_page, live_server, tmp_path):
    page = admin_page
    text = _export_csv(live_server, tmp_path / "export.csv")
    bad = tmp_path / "annuaire-faux.csv"
    bad.write_text(text.replace("+33199007501", "+33 1 99", 1)
                   .replace(";lundi-vendredi 09:30-11:30 14:00-16:30;", ";lundi 25:00-26:00;", 1),
                   encoding="utf-8-sig")
    page.goto("/admin/annuaire/import")
    assert_accessible(page)
    page.get_by_label("Fichier de l'annuaire").set_input_files(str(bad))
    page.get_by_role("button", name="Voir l'aperçu").click()
    expect(page.get_by_role("alert")).to_contain_text("2 cellules à corriger")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Horaires")
    expect(rows.nth(1)).to_contain_text("Lignes")
    assert_accessible(page)
    assert _snapshot(live_server, "75").lines[0].number == "+33199007501"

    good = tmp_path / "annuaire.csv"
    good.write_text(text.replace("+33199007501", "01 99 00 75 99", 1), encoding="utf-8-sig")
    page.goto("/admin/annuaire/import")
    page.get_by_label("Fichier de l'annuaire").set_input_files(str(good))
    page.get_by_role("button", name="Voir l'aperçu").click()
    expect(page.get_by_text("1 département changera")).to_be_visible()
    expect(page.get_by_role("heading", name="75 Paris")).to_be_visible()
    expect(page.locator("tbody.svi-diff")).to_contain_text("+33199007599")
    assert _snapshot(live_server, "75").lines[0].number == "+33199007501"  # not before confirming
    assert_accessible(page)
    page.get_by_role("button", name="Confirmer l'import").click()
    expect(page.get_by_role("status")).to_contain_text("1 département(s) modifié(s)")
    expect(page.get_by_role("heading", level=1)).to_have_text("Journal des modifications")
    expect(page.locator("table")).to_contain_text("import:annuaire.csv")
    assert_accessible(page)
    assert _snapshot(live_server, "75").lines[0].number == "+33199007599"
