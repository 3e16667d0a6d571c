"""The call simulator in a real browser: a test call typed on the page's keypad, to the end."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, login

pytestmark = pytest.mark.browser


def test_the_browser_simulator_completes_a_call(page, live_server):
    live_server.user("admin@example.gouv.fr", "admin")
    login(page, "admin@example.gouv.fr")
    page.get_by_role("link", name="Simulateur d'appel").click()
    page.get_by_label("Date et heure simulées (heure de Paris)").fill("2026-12-21T10:00")
    page.get_by_role("button", name="Appeler").click()
    expect(page.locator("#transcription")).to_contain_text("Tapez le numéro de votre département")
    for key in ("Touche 9", "Touche 3", "Touche dièse"):
        page.get_by_role("button", name=key, exact=True).click()
    expect(page.get_by_label("Touches tapées")).to_have_value("93#")
    page.get_by_role("button", name="Envoyer").click()
    expect(page.locator("#transcription")).to_contain_text("Vous avez choisi le département 93")
    page.get_by_label("Touches tapées").fill("1")
    page.get_by_role("button", name="Envoyer").click()
    expect(page.locator("#transcription")).to_contain_text("indiquez son motif")
    assert_accessible(page)
    page.get_by_role("button", name="Ne rien taper").click()
    expect(page.get_by_role("heading", name="Appel terminé")).to_be_visible()
    expect(page.locator("#transcription")).to_contain_text("le référent prend l'appel")
    expect(page.get_by_text("Issue enregistrée : décroché (appel de test, non compté).")).to_be_visible()
    assert not page.console_errors, page.console_errors
