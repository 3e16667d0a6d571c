"""Every route of the app × every role: allowed or refused exactly as the policy table says.

The table below is the policy written out by hand. A route added without a line here fails
`test_every_route_is_in_the_table`; a route whose view declares no rule is refused to all.
"""

from __future__ import annotations

import pytest

from accounts import tokens
from accounts.models import Role
from audit.operations import Actor
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
    # Single sign-on (off in this app: its routes answer 404) and the waiting page of an account
    # without a role (the role-less account's refusals are in test_oidc.py).
    "sso.start": [("POST", "/connexion/sso", EVERYONE)],
    "sso.callback": [("GET", "/connexion/sso/retour?code=x&state=y", EVERYONE)],
    "sso.waiting": [("GET", "/connexion/en-attente", LOGGED_IN)],
    "sso.logged_out": [("GET", "/deconnexion/sso/retour?state=x", EVERYONE)],
    "account_pages.index": [("GET", "/admin/comptes/", {ADMIN})],
    "account_pages.edit": [("GET", "/admin/comptes/999999", {ADMIN}),
                           ("POST", "/admin/comptes/999999", {ADMIN})],
    "account_pages.unlink": [("POST", "/admin/comptes/999999/dissocier", {ADMIN})],
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
    "dashboard_pages.mine": [("GET", "/tableau-de-bord/mes-departements", LOGGED_IN)],
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
    # Tickets: unknown numbers and references answer 404 to whoever is logged in; the 403 on
    # another département's ticket is in test_web_tickets.py.
    "ticket_pages.index": [("GET", "/tickets/", LOGGED_IN),
                           ("GET", "/tickets/?departement=93&statut=&en_retard=y", LOGGED_IN)],
    "ticket_pages.detail": [("GET", "/tickets/T-2026-999999", LOGGED_IN)],
    "ticket_pages.take": [("POST", "/tickets/T-2026-999999/prendre", LOGGED_IN)],
    "ticket_pages.set_status": [("POST", "/tickets/T-2026-999999/statut", LOGGED_IN)],
    "ticket_pages.comment": [("POST", "/tickets/T-2026-999999/commentaires", LOGGED_IN)],
    "ticket_pages.escalate": [("POST", "/tickets/T-2026-999999/escalader", LOGGED_IN)],
    "ticket_pages.close": [("POST", "/tickets/T-2026-999999/clore", LOGGED_IN)],
    "ticket_pages.link_incident": [("POST", "/tickets/T-2026-999999/incident", LOGGED_IN)],
    "ticket_pages.recording": [("GET", "/tickets/T-2026-999999/enregistrement", LOGGED_IN)],
    "ticket_pages.from_solicitation": [("GET", "/tickets/depuis/S-0000000000", LOGGED_IN),
                                       ("POST", "/tickets/depuis/S-0000000000", LOGGED_IN)],
    "ticket_pages.incident_list": [("GET", "/tickets/incidents/", {ADMIN, NATIONAL}),
                                   ("POST", "/tickets/incidents/", {ADMIN, NATIONAL})],
    "ticket_pages.incident": [("GET", "/tickets/incidents/999999", {ADMIN, NATIONAL})],
    "ticket_pages.incident_message": [("POST", "/tickets/incidents/999999/message",
                                       {ADMIN, NATIONAL})],
    "ticket_pages.incident_close": [("POST", "/tickets/incidents/999999/clore",
                                     {ADMIN, NATIONAL})],
    "email_pages.index": [("GET", "/admin/courriels", {ADMIN})],
    "email_pages.edit": [("GET", "/admin/courriels/new_voicemail", {ADMIN})],
    "email_pages.save": [("POST", "/admin/courriels/new_voicemail", {ADMIN})],
    "token_pages.index": [("GET", "/mon-compte/jetons/", LOGGED_IN)],
    "token_pages.create": [("POST", "/mon-compte/jetons/", LOGGED_IN)],
    "token_pages.revoke": [("POST", "/mon-compte/jetons/999999/revoquer", LOGGED_IN)],
    # The JSON API: a token of each role (anonymous: none, answered 401).
    "apidoc.index": [("GET", "/api/", EVERYONE)],
    "api-docs.openapi_json": [("GET", "/api/openapi.json", EVERYONE)],
    "api_me.me": [("GET", "/api/v1/me", LOGGED_IN)],
    "api_directory.list_departements": [("GET", "/api/v1/departements", LOGGED_IN)],
    "api_directory.get_departement": [("GET", "/api/v1/departements/75", {ADMIN, NATIONAL}),
                                      ("GET", "/api/v1/departements/93", LOGGED_IN)],
    "api_directory.put_departement": [("PUT", "/api/v1/departements/75", {ADMIN}),
                                      ("PUT", "/api/v1/departements/93", {ADMIN})],
    "api_solicitations.list_solicitations": [
        ("GET", "/api/v1/solicitations", LOGGED_IN),
        ("GET", "/api/v1/solicitations?departement=75", {ADMIN, NATIONAL}),
        ("GET", "/api/v1/solicitations?departement=93", LOGGED_IN)],
    "api_solicitations.get_solicitation": [("GET", "/api/v1/solicitations/S-0000000000",
                                            LOGGED_IN)],
    "api_solicitations.qualify": [("PUT", "/api/v1/solicitations/S-0000000000/qualification",
                                   LOGGED_IN)],
    "api_solicitations.add_solicitation": [("POST", "/api/v1/solicitations", LOGGED_IN)],
    "api_solicitations.get_call": [("GET", "/api/v1/calls/999999", LOGGED_IN)],
    "api_tickets.list_tickets": [("GET", "/api/v1/tickets", LOGGED_IN),
                                 ("GET", "/api/v1/tickets?status=open&late=true", LOGGED_IN)],
    "api_tickets.get_ticket": [("GET", "/api/v1/tickets/T-2026-999999", LOGGED_IN)],
    "api_tickets.take": [("POST", "/api/v1/tickets/T-2026-999999/take", LOGGED_IN)],
    "api_tickets.set_status": [("POST", "/api/v1/tickets/T-2026-999999/status", LOGGED_IN)],
    "api_tickets.add_comment": [("POST", "/api/v1/tickets/T-2026-999999/comments", LOGGED_IN)],
    "api_tickets.escalate": [("POST", "/api/v1/tickets/T-2026-999999/escalate", LOGGED_IN)],
    "api_tickets.close": [("POST", "/api/v1/tickets/T-2026-999999/close", LOGGED_IN)],
    "api_indicators.get_indicators": [
        ("GET", "/api/v1/indicators", {ADMIN, NATIONAL}),
        ("GET", "/api/v1/indicators?departement=75", {ADMIN, NATIONAL}),
        ("GET", "/api/v1/indicators?departement=93", LOGGED_IN)],
    "api_workbooks.get_workbook": [
        ("GET", "/api/v1/workbooks/2026-Q4/national.xlsx", {ADMIN, NATIONAL}),
        ("GET", "/api/v1/workbooks/2026-Q4/departement-75.xlsx", {ADMIN, NATIONAL}),
        ("GET", "/api/v1/workbooks/2026-Q4/departement-93.xlsx", LOGGED_IN)],
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


class Client:
    """A browser logged in as one role, holding that role's API token as well."""

    def __init__(self, client, token: str | None = None):
        self.client, self.token = client, token

    def open(self, url, method):
        api = url.startswith("/api/v1/")
        headers = {"Authorization": f"Bearer {self.token}"} if api and self.token else {}
        return self.client.open(url, method=method, headers=headers)


def _clients(app, db):
    app.config["WTF_CSRF_ENABLED"] = False  # the table checks who gets in, not CSRF
    users = {ADMIN: make_user(db, "admin@example.gouv.fr", Role.admin),
             NATIONAL: make_user(db, "national@example.gouv.fr", Role.national),
             REF93: make_user(db, "ref93@example.gouv.fr", Role.referent, departements=["93"])}
    result = {ANON: Client(app.test_client())}
    for who, user in users.items():
        client = app.test_client()
        app.config["WTF_CSRF_ENABLED"] = True
        assert login(client, user.email).status_code == 302
        app.config["WTF_CSRF_ENABLED"] = False
        _, secret = tokens.create(db, Actor.cli(), user, "table")
        db.commit()
        result[who] = Client(client, secret)
    return result


@pytest.mark.parametrize("endpoint", sorted(TABLE))
def test_route_by_role(clients, endpoint):
    for method, url, allowed in TABLE[endpoint]:
        for who, client in clients.items():
            response = client.open(url, method)
            api = url.startswith("/api/v1/")
            refused = response.status_code in ((401, 403) if api else (403,)) or (
                not api and response.status_code == 302
                and response.headers["Location"].startswith("/connexion?next="))
            if who in allowed:
                assert not refused and response.status_code < 500, (who, method, url, response.status_code)
            else:
                assert refused, (who, method, url, response.status_code)
                if who == ANON:
                    assert response.status_code == (401 if api else 302), (method, url)


def test_a_view_without_rule_is_refused(app, db):
    """A route registered without `policy.allow` is refused to everyone, admins included."""
    @app.get("/sans-regle")
    def undeclared():
        return "secret"

    for client in _clients(app, db).values():
        assert client.open("/sans-regle", "GET").status_code == 403
