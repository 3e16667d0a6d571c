"""Logging in and out, and who may open which département, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, login

pytestmark = pytest.mark.browser

ADMIN = "admin@example.gouv.fr"
REFERENT_93 = "referent93@example.gouv.fr"


def test_anonymous_visitor_gets_the_login_page(page):
    page.goto("/")
    assert page.url.endswith("/connexion")
    expect(page).to_have_title("Connexion — Assistance téléphonique SVI")
    expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")
    expect(page.get_by_label("Adresse électronique")).to_be_visible()
    expect(page.get_by_label("Mot de passe")).to_be_visible()
    expect(page.get_by_role("button", name="Se connecter")).to_be_visible()


def test_wrong_password_shows_an_error(page, live_server):
    live_server.user(ADMIN, "admin")
    login(page, ADMIN, "not the right password")
    assert page.url.endswith("/connexion")
    expect(page.get_by_role("alert")).to_contain_text("Adresse ou mot de passe incorrect")
    expect(page.get_by_role("button", name="Se déconnecter")).to_have_count(0)


def test_admin_logs_in_and_lands_on_the_overview(page, live_server):
    live_server.user(ADMIN, "admin")
    login(page, ADMIN)
    assert page.url.endswith("/annuaire/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Annuaire des départements")
    expect(page.locator("table caption")).to_have_text("Départements : 101 sur 101")
    expect(page.get_by_role("button", name="Se déconnecter")).to_be_visible()


def test_logout_ends_the_session(page, live_server):
    live_server.user(ADMIN, "admin")
    login(page, ADMIN)
    page.goto("/annuaire/93")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Seine-Saint-Denis")

    page.get_by_role("button", name="Se déconnecter").click()
    assert page.url.endswith("/connexion")
    expect(page.get_by_role("status")).to_contain_text("Vous êtes déconnecté.")
    expect(page.get_by_role("button", name="Se déconnecter")).to_have_count(0)
    page.goto("/annuaire/93")  # the session is really gone
    assert "/connexion" in page.url
    expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")


def test_referent_reads_only_their_departement(page, live_server):
    live_server.user(REFERENT_93, "referent", departements=["93"])
    login(page, REFERENT_93)

    response = page.goto("/annuaire/93")
    assert response.status == 200
    expect(page.get_by_role("heading", level=1)).to_contain_text("Seine-Saint-Denis")

    response = page.goto("/annuaire/75")
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Accès refusé")
    expect(page.locator("main")).not_to_contain_text("Paris")


def test_login_page_is_accessible(page):
    page.goto("/connexion")
    assert_accessible(page)
    assert page.console_errors == []


def test_overview_is_accessible(page, live_server):
    live_server.user(ADMIN, "admin")
    login(page, ADMIN)
    expect(page.get_by_role("heading", level=1)).to_have_text("Annuaire des départements")
    assert_accessible(page)
    assert page.console_errors == []
