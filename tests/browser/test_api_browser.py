"""A referent in a real browser creates an API token (shown once), uses it against the API
served on loopback, revokes it, and the API refuses it; the pages pass axe-core."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, login

pytestmark = pytest.mark.browser

REFERENT = "referente.api@example.gouv.fr"


def _me(base: str, secret: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}/api/v1/me",
                                     headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_referent_creates_uses_and_revokes_a_token(page, live_server):
    live_server.user(REFERENT, "referent", departements=["93"])
    login(page, REFERENT)
    page.get_by_role("link", name=REFERENT).first.click()
    page.get_by_role("link", name="Mes jetons d'API").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mes jetons d'API")
    page.get_by_role("button", name="Créer le jeton").click()  # no name: refused, said
    expect(page.locator(".fr-error-text").first).to_contain_text("nom")
    page.get_by_label("Nom du jeton").fill("Tableau régional")
    page.get_by_role("button", name="Créer le jeton").click()
    secret = page.get_by_label("Votre nouveau jeton").input_value()
    assert secret.startswith("svi_")
    assert_accessible(page)

    status, me = _me(live_server.url, secret)
    assert status == 200 and me["departements"] == ["93"] and me["role"] == "referent"

    page.goto(f"{live_server.url}/mon-compte/jetons/")  # the secret is never shown again
    expect(page.get_by_label("Votre nouveau jeton")).to_have_count(0)
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_role("button", name="Révoquer").click()
    expect(page.get_by_role("status")).to_contain_text("révoqué")
    status, problem = _me(live_server.url, secret)
    assert status == 401 and problem["title"] == "Authentification requise"

    page.get_by_role("link", name="l'API").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API : documentation")
    assert_accessible(page)
