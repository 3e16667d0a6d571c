"""Every route of the app × every role: allowed or refused exactly as the policy table says.

The table below is the policy written out by hand. A route added without a line here fails
`test_every_route_is_in_the_table`; a route whose view declares no rule is refused to all.
"""

from __future__ import annotations

import pytest

from accounts.models import Role
from tests.webclient import login, make_user
from web import policy

ANON, ADMIN, NATIONAL, REF93 = "anonyme", "admin", "national", "référent 93"
EVERYONE = {ANON, ADMIN, NATIONAL, REF93}
LOGGED_IN = {ADMIN, NATIONAL, REF93}

#: endpoint -> (method, URL, who may). Département pages are tried on 75, which the
#: referent of 93 must not reach, and on 93, which they may read.
TABLE = {
    "home.index": [("GET", "/", EVERYONE)],
    "auth.login": [("GET", "/connexion", EVERYONE)],
    "auth.logout": [("POST", "/deconnexion", EVERYONE)],
    "auth.forgot": [("GET", "/mot-de-passe-oublie", EVERYONE)],
    "auth.reset": [("GET", "/reinitialiser/jeton-invalide", EVERYONE)],
    "auth.account": [("GET", "/mon-compte", LOGGED_IN)],
    "directory_pages.overview": [("GET", "/annuaire/", LOGGED_IN)],
    "directory_pages.show": [("GET", "/annuaire/75", {ADMIN, NATIONAL}),
                             ("GET", "/annuaire/93", LOGGED_IN)],
    "directory_pages.year": [("GET", "/annuaire/75/annee", {ADMIN, NATIONAL}),
                             ("GET", "/annuaire/93/annee", LOGGED_IN)],
    "directory_pages.edit": [("GET", "/annuaire/75/modifier", {ADMIN}),
                             ("GET", "/annuaire/93/modifier", {ADMIN})],
    "preview_pages.preview": [("GET", "/apercu", LOGGED_IN)],
    "preview_pages.simulator": [("GET", "/simulateur", LOGGED_IN)],
    "preview_pages.simulator_start": [("POST", "/simulateur/appeler", LOGGED_IN)],
    "preview_pages.simulator_keys": [("POST", "/simulateur/touches", LOGGED_IN)],
    "preview_pages.simulator_hang_up": [("POST", "/simulateur/raccrocher", LOGGED_IN)],
    "admin_pages.audit_log": [("GET", "/admin/journal", {ADMIN})],
    "downloads.index": [("GET", "/classeurs/", LOGGED_IN)],
    "downloads.workbook": [("GET", "/classeurs/2026-Q4/national.xlsx", {ADMIN, NATIONAL}),
                           ("GET", "/classeurs/2026-Q4/departement-75.xlsx", {ADMIN, NATIONAL}),
                           ("GET", "/classeurs/2026-Q4/departement-93.xlsx", LOGGED_IN)],
    "dashboard_pages.national": [("GET", "/tableau-de-bord/", {ADMIN, NATIONAL})],
    "dashboard_pages.departement": [("GET", "/tableau-de-bord/75", {ADMIN, NATIONAL}),
                                    ("GET", "/tableau-de-bord/93", LOGGED_IN)],
    "admin_pages.worked_holidays": [("GET", "/admin/jours-feries", {ADMIN})],
    "admin_pages.import_directory": [("GET", "/admin/annuaire/import", {ADMIN})],
    "admin_pages.export_directory": [("GET", "/admin/annuaire/export.csv", {ADMIN})],
    "admin_pages.upload_directory": [("POST", "/admin/annuaire/import", {ADMIN})],
    "admin_pages.confirm_import": [("POST", "/admin/annuaire/import/confirmer", {ADMIN})],
    "admin_pages.prompt_list": [("GET", "/admin/messages", {ADMIN})],
    "admin_pages.prompt": [("GET", "/admin/messages/opening_hours", {ADMIN}),
                           ("GET", "/admin/messages/opening_hours?departement=93", {ADMIN})],
    "admin_pages.save_prompt_text": [("POST", "/admin/messages/opening_hours", {ADMIN})],
    "admin_pages.save_prompt_audio": [("POST", "/admin/messages/opening_hours/enregistrement",
                                       {ADMIN})],
    # « Mes appels »: unknown references answer 404 to whoever is logged in; the 403 on another
    # département's reference is in test_web_referents.py (references are random).
    "referent_pages.index": [("GET", "/appels/", LOGGED_IN),
                             ("GET", "/appels/?departement=75", LOGGED_IN)],
    "referent_pages.detail": [("GET", "/appels/S-0000000000", LOGGED_IN)],
    "referent_pages.qualify": [("POST", "/appels/S-0000000000/qualifier", LOGGED_IN)],
    "referent_pages.new": [("GET", "/appels/nouvelle", LOGGED_IN),
                           ("POST", "/appels/nouvelle", LOGGED_IN)],
    "referent_pages.import_workbook": [("GET", "/appels/import", LOGGED_IN),
                                       ("POST", "/appels/import", LOGGED_IN)],
}


def test_every_route_is_in_the_table(app):
    """A new page or API route must be given its line in TABLE (and a rule on its view)."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    checked = {e for e in endpoints if not policy.is_exempt(e)}
    assert checked == set(TABLE), (
        f"routes without a line in TABLE: {sorted(checked - set(TABLE))}; "
        f"lines without a route: {sorted(set(TABLE) - checked)}")
    for endpoint in checked:
        assert policy.rule_of(app, endpoint) is not None, f"{endpoint} declares no rule"


@pytest.fixture
def clients(app, db):
    return _clients(app, db)


def _clients(app, db):
    app.config["WTF_CSRF_ENABLED"] = False  # the table checks who gets in, not CSRF
    make_user(db, "admin@example.gouv.fr", Role.admin)
    make_user(db, "national@example.gouv.fr", Role.national)
    make_user(db, "ref93@example.gouv.fr", Role.referent, departements=["93"])
    result = {ANON: app.test_client()}
    for who, email in ((ADMIN, "admin@example.gouv.fr"), (NATIONAL, "national@example.gouv.fr"),
                       (REF93, "ref93@example.gouv.fr")):
        client = app.test_client()
        app.config["WTF_CSRF_ENABLED"] = True
        assert login(client, email).status_code == 302
        app.config["WTF_CSRF_ENABLED"] = False
        result[who] = client
    return result


@pytest.mark.parametrize("endpoint", sorted(TABLE))
def test_route_by_role(clients, endpoint):
    for method, url, allowed in TABLE[endpoint]:
        for who, client in clients.items():
            response = client.open(url, method=method)
            refused = response.status_code == 403 or (
                response.status_code == 302
                and response.headers["Location"].startswith("/connexion?next="))
            if who in allowed:
                assert not refused and response.status_code < 500, (who, method, url, response.status_code)
            else:
                assert refused, (who, method, url, response.status_code)
                if who == ANON:
                    assert response.status_code == 302, (method, url)


def test_a_view_without_rule_is_refused(app, db):
    """A route registered without `policy.allow` is refused to everyone, admins included."""
    @app.get("/sans-regle")
    def undeclared():
        return "secret"

    for client in _clients(app, db).values():
        assert client.get("/sans-regle").status_code == 403
