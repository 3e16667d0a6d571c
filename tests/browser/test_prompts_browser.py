"""The admin's « Messages » in a real browser: a refused text shows its error on the field, a
saved one is listed; both pages pass axe-core."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, login

pytestmark = pytest.mark.browser

ADMIN = "admin@example.gouv.fr"


def test_admin_edits_a_prompt_and_a_lost_placeholder_is_named(page, live_server):
    live_server.user(ADMIN, "admin")
    login(page, ADMIN)
    page.get_by_role("button", name="Administration").click()
    page.get_by_role("link", name="Messages").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Messages")
    assert_accessible(page)
    page.get_by_role("link", name="opening_hours").click()
    field = page.get_by_label("Texte lu aux appelants")
    field.fill("Elle vous répond aux heures habituelles.")
    page.get_by_role("button", name="Enregistrer le texte").click()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#texte-erreur")).to_contain_text("Valeur manquante : {horaires}")
    assert_accessible(page)
    field.fill("Nous répondons {horaires}.")
    page.get_by_role("button", name="Enregistrer le texte").click()
    expect(page.get_by_role("status")).to_contain_text("Texte enregistré")
    expect(page.get_by_role("button", name="Rétablir le texte d'origine")).to_be_visible()
    page.goto("/admin/messages")
    expect(page.locator("table")).to_contain_text("Nous répondons {horaires}.")
