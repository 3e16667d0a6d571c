"""Single sign-on in a real browser: the ProConnect button, the stand-in provider's page, the
return logged in (or to the waiting page), the logout through the provider; accessibility of the
login page with its button and of the waiting page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from devtools import liveserver
from devtools.oidc_standin import OidcStandIn
from tests.browser.conftest import assert_accessible

pytestmark = pytest.mark.browser

AGENT_EMAIL = "camille.martin@interieur.gouv.fr"


@pytest.fixture
def provider():
    standin = OidcStandIn().start()
    standin.add_user("agent-1", AGENT_EMAIL, "Camille", "Martin")  # chosen on its page
    yield standin
    standin.stop()


@pytest.fixture
def sso_server(database_template, tmp_path, provider):
    server = liveserver.LiveServer(tmp_path, template=database_template,
                                   config=provider.settings())
    yield server
    server.stop()


@pytest.fixture
def sso_page(browser, sso_server):
    page = liveserver.new_page(browser, sso_server.url)
    yield page
    page.context.close()


def _proconnect(page) -> None:
    """From the login page, through the stand-in's page, back to the service."""
    page.goto("/connexion")
    page.get_by_role("button", name="S’identifier avec ProConnect").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Fournisseur d'identité de test")
    page.get_by_role("button", name="Se connecter en tant que Camille Martin").click()
    page.wait_for_load_state()


def test_the_login_page_with_the_proconnect_button_is_accessible(sso_page):
    sso_page.goto("/connexion")
    expect(sso_page.get_by_role("button", name="S’identifier avec ProConnect")).to_be_visible()
    expect(sso_page.get_by_role("link", name="Qu’est-ce que ProConnect ?")).to_be_visible()
    expect(sso_page.get_by_label("Adresse électronique")).to_be_visible()
    assert_accessible(sso_page)
    assert sso_page.console_errors == []


def test_a_new_agent_lands_on_the_waiting_page(sso_page):
    _proconnect(sso_page)
    assert sso_page.url.endswith("/connexion/en-attente")
    expect(sso_page.get_by_role("heading", level=1)).to_have_text("Compte en attente d'un rôle")
    expect(sso_page.get_by_role("status")).to_contain_text(
        "Votre compte a été créé ; un administrateur doit vous attribuer un rôle")
    expect(sso_page.locator(".fr-nav__link")).to_have_count(0)
    assert_accessible(sso_page)
    sso_page.goto("/annuaire/")  # nothing else opens
    assert sso_page.url.endswith("/connexion/en-attente")
    assert sso_page.console_errors == []


def test_an_admin_logs_in_with_proconnect_and_out_through_it(sso_page, sso_server, provider):
    sso_server.user(AGENT_EMAIL, "admin", name="Camille Martin")
    _proconnect(sso_page)
    assert sso_page.url.endswith("/annuaire/")
    expect(sso_page.get_by_role("heading", level=1)).to_have_text("Annuaire des départements")

    sso_page.get_by_role("button", name="Se déconnecter").click()  # a form, then the provider
    sso_page.wait_for_load_state()
    assert sso_page.url.endswith("/connexion")
    expect(sso_page.get_by_role("status")).to_contain_text(
        "Vous êtes déconnecté, de ce service et de ProConnect.")
    assert provider.logouts and provider.logouts[-1]["id_token_hint"]
    sso_page.goto("/annuaire/")
    assert "/connexion" in sso_page.url


def test_an_admin_grants_the_new_agent_a_role(sso_page, sso_server, browser):
    _proconnect(sso_page)
    assert sso_page.url.endswith("/connexion/en-attente")
    sso_server.user("admin@example.gouv.fr", "admin")
    admin = liveserver.new_page(browser, sso_server.url)
    try:
        liveserver.login(admin, "admin@example.gouv.fr")
        admin.goto("/admin/comptes/")
        expect(admin.get_by_role("status")).to_contain_text("1 compte en attente d'un rôle")
        assert_accessible(admin)
        admin.get_by_role("link", name=AGENT_EMAIL).click()
        expect(admin.get_by_role("heading", level=1)).to_have_text("Camille Martin")
        assert_accessible(admin)
        admin.get_by_label("Rôle").select_option("referent")
        admin.get_by_label("Départements (référents)").fill("93")
        admin.get_by_role("button", name="Enregistrer les droits").click()
        expect(admin.get_by_role("status").first).to_contain_text(
            f"Droits de {AGENT_EMAIL} enregistrés : référent, départements 93.")
        assert admin.console_errors == []
    finally:
        admin.context.close()
    sso_page.get_by_role("link", name="Vérifier à nouveau").click()
    assert sso_page.url.endswith("/annuaire/93")
    expect(sso_page.get_by_role("heading", level=1)).to_contain_text("Seine-Saint-Denis")
