"""Single sign-on by OpenID Connect against the local stand-in provider (devtools/oidc_standin.py,
on 127.0.0.1): the whole flow through the real pages, accounts created without a role, linked
by email, every refusal (state, nonce, audience, expiry, signature, provider errors, provider
down) shown as a French page, the logout at the provider, the settings and the migration."""

from __future__ import annotations

import html
import socket
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from sqlalchemy import select, text

from accounts import tokens
from accounts.models import Role, User
from app import create_app
from audit.models import AuditEntry
from audit.operations import Actor
from core import db as core_db
from core import settings
from core.cli import upgrade
from core.db import make_engine
from devtools.oidc_standin import OidcStandIn
from tests.conftest import PUBLIC_BASE
from tests.test_web_authorization import EVERYONE, TABLE
from tests.webclient import csrf_token, form_fields, login, make_user, post_form

AGENT = "agent-1"
AGENT_EMAIL = "camille.martin@interieur.gouv.fr"
WAITING = "Votre compte a été créé ; un administrateur doit vous attribuer un rôle"


@pytest.fixture(scope="module")
def standin():
    provider = OidcStandIn().start()
    yield provider
    provider.stop()


@pytest.fixture
def provider(standin):
    """The stand-in, reset: one agent, approved at once, well-behaved."""
    standin.users.clear()
    standin.add_user(AGENT, AGENT_EMAIL, "Camille", "Martin")
    standin.auto_user, standin.deny, standin.misbehave = AGENT, False, set()
    standin.userinfo_jwt = standin.pkce = True
    standin.logouts.clear()
    standin.token_requests.clear()
    return standin


def _app_like(app, tmp_path, **overrides):
    """Another app on the `app` fixture's database (reset and seeded by it), with `overrides`."""
    keep = ("DATABASE_URL", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "SVI_CALLER_ID", "SECRET_KEY",
            "CLOCK", "MAIL_OUTBOX_DIR")
    return create_app({**{k: app.config[k] for k in keep},
                       "JOURNAL_DIR": str(tmp_path / "journal-sso"), **overrides})


@pytest.fixture
def sso_app(app, provider, tmp_path):
    """The service with single sign-on pointed at the stand-in (SQLite and PostgreSQL)."""
    application = _app_like(app, tmp_path, **provider.settings())
    yield application
    core_db.dispose(application)


def start(client, next_url: str | None = None):
    """Click « S'identifier avec ProConnect » on the login page: the redirect to the provider."""
    token = csrf_token(client, "/connexion" + (f"?next={quote(next_url)}" if next_url else ""))
    response = client.post("/connexion/sso" + (f"?next={quote(next_url)}" if next_url else ""),
                           data={"csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def at_provider(location: str) -> str:
    """The browser at the provider: where the provider sends it back (a URL of the service)."""
    answer = requests.get(location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = answer.headers["Location"]
    assert back.startswith(PUBLIC_BASE + "/"), back
    return back


def come_back(client, url: str):
    """The browser back at the service, on the URL the provider gave."""
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}")


def sso_login(client, next_url: str | None = None):
    """The whole single sign-on; returns the service's answer to the return from the provider."""
    return come_back(client, at_provider(start(client, next_url)))


def _account(db, email: str) -> User | None:
    db.expire_all()
    return db.scalar(select(User).where(User.email == email))


def _summaries(db) -> list[str]:
    return db.scalars(select(AuditEntry.summary).order_by(AuditEntry.id)).all()


def _refusal(response, status: int, words: str) -> str:
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == status, page
    assert "Connexion impossible" in page and words in page, page
    assert 'href="/connexion"' in page  # a way back
    return page


# --- the login page -------------------------------------------------------------------------

def test_without_issuer_there_is_no_button_and_no_sso(app, db):
    client = app.test_client()
    page = client.get("/connexion").get_data(as_text=True)
    assert "ProConnect" not in page and "/connexion/sso" not in page
    token = csrf_token(client, "/connexion")
    assert client.post("/connexion/sso", data={"csrf_token": token}).status_code == 404
    assert client.get("/connexion/sso/retour?code=x&state=y").status_code == 404


def test_the_login_page_shows_the_proconnect_button_beside_the_local_form(sso_app, db):
    response = sso_app.test_client().get("/connexion?next=/annuaire/93")
    page = response.get_data(as_text=True)
    assert 'class="fr-connect fr-connect--pro"' in page
    assert "S’identifier avec" in page
    assert '<span class="fr-connect__brand">ProConnect</span>' in page
    assert 'action="/connexion/sso?next=/annuaire/93"' in page
    assert "Qu’est-ce que ProConnect ?" in page
    assert 'name="password"' in page  # the local form stays
    # The forms may lead the browser to the provider (CSP form-action), and nowhere else.
    csp = response.headers["Content-Security-Policy"]
    assert f"form-action 'self' {urlsplit(sso_app.config['OIDC_ISSUER']).scheme}://" in csp


# --- first login: an account without a role ---------------------------------------------------

def test_a_new_agent_gets_an_account_without_role_that_opens_nothing(sso_app, db, provider):
    client = sso_app.test_client()
    location = start(client)
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(provider.issuer + "/authorize?")
    assert query["scope"] == ["openid email given_name usual_name"]
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32  # as ProConnect wants
    assert query["code_challenge_method"] == ["S256"]
    response = come_back(client, at_provider(location))
    assert response.status_code == 302 and response.headers["Location"] == "/connexion/en-attente"

    # The code was exchanged with the secret in the body and the PKCE verifier.
    sent = provider.token_requests[-1]
    assert sent["client_secret"] == provider.client_secret and sent["code_verifier"]

    user = _account(db, AGENT_EMAIL)
    assert user.role is None and user.password_hash is None and user.active
    assert (user.oidc_issuer, user.oidc_subject) == (provider.issuer, AGENT)
    assert user.name == "Camille Martin" and user.last_login_at is not None
    assert f"compte créé par ProConnect (sans rôle) : {AGENT_EMAIL}" in _summaries(db)

    page = client.get("/connexion/en-attente")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and WAITING in html
    assert "fr-nav__link" not in html  # no menu: nothing to open
    assert client.get("/").headers["Location"] in ("/annuaire/", "/connexion/en-attente")

    # Every page that is not public sends them back to the waiting page; the API refuses them.
    sso_app.config["WTF_CSRF_ENABLED"] = False
    _, secret = tokens.create(db, Actor.cli(), db.get(User, user.id), "essai")
    db.commit()
    for endpoint, lines in TABLE.items():
        for method, url, allowed in lines:
            if allowed == EVERYONE or endpoint == "sso.waiting":
                continue
            if url.startswith("/api/v1/"):
                answer = client.open(url, method=method,
                                     headers={"Authorization": f"Bearer {secret}"})
                assert answer.status_code == 403, (endpoint, url, answer.status_code)
            else:
                answer = client.open(url, method=method)
                assert answer.status_code == 302, (endpoint, url, answer.status_code)
                assert answer.headers["Location"] == "/connexion/en-attente", (endpoint, url)


def test_an_admin_grants_a_role_and_the_agent_gets_in(sso_app, db, provider):
    agent = sso_app.test_client()
    sso_login(agent)
    user_id = _account(db, AGENT_EMAIL).id

    make_user(db, "admin@example.gouv.fr", Role.admin)
    admin = sso_app.test_client()
    assert login(admin, "admin@example.gouv.fr").status_code == 302
    listing = html.unescape(admin.get("/admin/comptes/").get_data(as_text=True))
    assert "1 compte en attente d'un rôle" in listing
    rows = listing[listing.index("<tbody>"):]
    assert AGENT_EMAIL in rows and "Rôle à attribuer" in rows
    assert rows.index(AGENT_EMAIL) < rows.index("admin@example.gouv.fr")  # waiting first

    page = admin.get(f"/admin/comptes/{user_id}").get_data(as_text=True)
    fields = form_fields(page, 1)  # after the header's logout form
    assert fields["active"] == "y" and fields["role"] == ""
    fields["role"], fields["departements"] = "referent", "93"
    refused = admin.post(f"/admin/comptes/{user_id}", data={**fields, "departements": ""})
    assert refused.status_code == 400
    assert "Un référent doit être rattaché à au moins un département." in \
        html.unescape(refused.get_data(as_text=True))
    saved = admin.post(f"/admin/comptes/{user_id}", data=fields)
    assert saved.status_code == 302 and saved.headers["Location"] == "/admin/comptes/"
    after = admin.get("/admin/comptes/").get_data(as_text=True)
    assert "Droits de camille.martin@interieur.gouv.fr enregistrés : référent, départements 93." \
        in after
    assert f"droits modifiés : {AGENT_EMAIL}" in _summaries(db)

    # The agent's open session now reaches their département, and only it.
    assert agent.get("/annuaire/93").status_code == 200
    assert agent.get("/annuaire/75").status_code == 403
    assert agent.get("/connexion/en-attente").headers["Location"] == "/"
    assert "fr-nav__link" in agent.get("/annuaire/93").get_data(as_text=True)


def test_an_existing_local_account_is_linked_by_its_email(sso_app, db, provider):
    make_user(db, AGENT_EMAIL, Role.national)
    provider.users[AGENT]["email"] = "Camille.Martin@Interieur.gouv.fr"  # case does not matter
    client = sso_app.test_client()
    response = sso_login(client, next_url="/annuaire/75")
    assert response.status_code == 302 and response.headers["Location"] == "/annuaire/75"
    assert client.get("/annuaire/75").status_code == 200
    user = _account(db, AGENT_EMAIL)
    assert user.role is Role.national and user.password_hash  # the password still works too
    assert (user.oidc_issuer, user.oidc_subject) == (provider.issuer, AGENT)
    assert f"compte associé à ProConnect : {AGENT_EMAIL}" in _summaries(db)

    # Later logins find the account by its identity, even if the provider's email changed.
    provider.users[AGENT]["email"] = "c.martin@interieur.gouv.fr"
    again = sso_app.test_client()
    assert sso_login(again).headers["Location"] == "/"
    assert again.get("/annuaire/75").status_code == 200
    assert db.scalar(select(User).where(User.email == "c.martin@interieur.gouv.fr")) is None


def test_an_account_tied_to_another_identity_is_not_taken_over(sso_app, db, provider):
    make_user(db, AGENT_EMAIL, Role.admin)
    assert sso_login(sso_app.test_client()).status_code == 302  # tied to agent-1
    provider.users.clear()
    provider.add_user("agent-1-bis", AGENT_EMAIL, "Camille", "Martin")
    provider.auto_user = "agent-1-bis"
    client = sso_app.test_client()
    _refusal(sso_login(client), 403, "déjà associé à une autre identité ProConnect")
    assert client.get("/annuaire/").headers["Location"].startswith("/connexion?next=")

    # An admin dissociates it: the next login ties it to the new identity.
    make_user(db, "admin2@example.gouv.fr", Role.admin)
    admin = sso_app.test_client()
    login(admin, "admin2@example.gouv.fr")
    user_id = _account(db, AGENT_EMAIL).id
    assert post_form(admin, f"/admin/comptes/{user_id}/dissocier", {},
                     page=f"/admin/comptes/{user_id}").status_code == 302
    assert f"compte dissocié de ProConnect : {AGENT_EMAIL}" in _summaries(db)
    assert sso_login(client).headers["Location"] == "/"
    assert _account(db, AGENT_EMAIL).oidc_subject == "agent-1-bis"


def test_a_disabled_account_or_an_unverified_email_is_refused(sso_app, db, provider):
    user = make_user(db, AGENT_EMAIL, Role.referent, departements=["93"])
    provider.users[AGENT]["email_verified"] = False
    _refusal(sso_login(sso_app.test_client()), 403, "n'est pas vérifiée")
    assert _account(db, AGENT_EMAIL).oidc_subject is None

    del provider.users[AGENT]["email_verified"]
    db.get(User, user.id).active = False
    db.commit()
    client = sso_app.test_client()
    _refusal(sso_login(client), 403, "Ce compte est désactivé")
    assert _account(db, AGENT_EMAIL).oidc_subject is None
    assert client.get("/annuaire/93").status_code == 302


# --- `next`, session fixation ----------------------------------------------------------------

@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "annuaire/93"])
def test_next_never_leads_off_site(sso_app, db, provider, target):
    make_user(db, AGENT_EMAIL, Role.admin)
    response = sso_login(sso_app.test_client(), next_url=target)
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_nothing_of_the_anonymous_session_survives_the_login(sso_app, db, provider):
    make_user(db, AGENT_EMAIL, Role.admin)
    client = sso_app.test_client()
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    sso_login(client)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert not [k for k in session if k.startswith("_state_")]  # state and nonce used up
        assert session["sso_id_token"] and session["_user_id"]


# --- refusals ---------------------------------------------------------------------------------

def test_a_tampered_or_replayed_state_is_refused(sso_app, db, provider):
    client = sso_app.test_client()
    back = at_provider(start(client))
    parts = urlsplit(back)
    query = parse_qs(parts.query)
    forged = f"{parts.path}?code={query['code'][0]}&state={query['state'][0][:-2]}xx"
    _refusal(client.get(forged), 400, "n'est plus valable")
    assert _account(db, AGENT_EMAIL) is None

    # Another browser cannot use this browser's answer (its session holds no such state).
    _refusal(come_back(sso_app.test_client(), back), 400, "n'est plus valable")
    # The right browser can, once; the same answer twice is refused.
    assert come_back(client, back).status_code == 302
    _refusal(come_back(client, back), 400, "n'est plus valable")


@pytest.mark.parametrize("fault", ["nonce", "audience", "expired", "signature", "issuer",
                                   "userinfo_sub", "userinfo_signature"])
def test_a_provider_answer_that_does_not_verify_is_refused(sso_app, db, provider, fault):
    provider.misbehave = {fault}
    client = sso_app.test_client()
    _refusal(sso_login(client), 400, "n'a pas pu être vérifiée")
    assert _account(db, AGENT_EMAIL) is None
    assert client.get("/connexion/en-attente").headers["Location"].startswith("/connexion?next=")


def test_the_agent_refusing_at_the_provider_gets_a_french_page(sso_app, db, provider):
    provider.deny = True
    page = _refusal(sso_login(sso_app.test_client()), 400, "a été annulée ou refusée")
    assert "Retour à la page de connexion" in page
    assert _account(db, AGENT_EMAIL) is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_provider_gets_a_french_page(app, db, tmp_path):
    # Down before the person leaves: discovery fails.
    down = _app_like(app, tmp_path, OIDC_ISSUER=f"http://127.0.0.1:{_closed_port()}/api/v2",
                     OIDC_CLIENT_ID="svi", OIDC_CLIENT_SECRET="secret", OIDC_TIMEOUT=2)
    try:
        client = down.test_client()
        token = csrf_token(client, "/connexion")
        _refusal(client.post("/connexion/sso", data={"csrf_token": token}), 503,
                 "ProConnect ne répond pas pour le moment")
    finally:
        core_db.dispose(down)

    # Down while the person is there: the code cannot be exchanged.
    provider = OidcStandIn().start()
    provider.add_user(AGENT, AGENT_EMAIL, "Camille", "Martin")
    provider.auto_user = AGENT
    flaky = _app_like(app, tmp_path, **provider.settings(), OIDC_TIMEOUT=2)
    try:
        client = flaky.test_client()
        back = at_provider(start(client))
        provider.stop()
        _refusal(come_back(client, back), 503, "ProConnect ne répond pas pour le moment")
        assert _account(db, AGENT_EMAIL) is None
    finally:
        core_db.dispose(flaky)


# --- logout -----------------------------------------------------------------------------------

def test_logout_ends_the_session_here_and_at_the_provider(sso_app, db, provider):
    make_user(db, AGENT_EMAIL, Role.admin)
    client = sso_app.test_client()
    sso_login(client)
    with client.session_transaction() as session:
        id_token = session["sso_id_token"]
    response = post_form(client, "/deconnexion", {}, page="/annuaire/")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(provider.issuer + "/session/end?")
    query = parse_qs(urlsplit(location).query)
    assert query["id_token_hint"] == [id_token]
    assert query["post_logout_redirect_uri"] == [PUBLIC_BASE + "/deconnexion/sso/retour"]
    assert client.get("/annuaire/").status_code == 302  # already logged out here

    back = at_provider(location)
    assert provider.logouts[-1]["id_token_hint"] == id_token
    response = come_back(client, back)
    assert response.status_code == 302 and response.headers["Location"] == "/connexion"
    assert "Vous êtes déconnecté, de ce service et de ProConnect." in \
        client.get("/connexion").get_data(as_text=True)


def test_a_password_login_logs_out_locally_only(sso_app, db, provider):
    make_user(db, "admin@example.gouv.fr", Role.admin)
    client = sso_app.test_client()
    login(client, "admin@example.gouv.fr")
    response = post_form(client, "/deconnexion", {}, page="/annuaire/")
    assert response.headers["Location"] == "/connexion"
    assert provider.logouts == []


def test_json_userinfo_and_a_provider_without_pkce(sso_app, db, provider):
    provider.userinfo_jwt = provider.pkce = False
    client = sso_app.test_client()
    location = start(client)
    assert "code_challenge" not in location
    assert come_back(client, at_provider(location)).headers["Location"] == "/connexion/en-attente"
    assert "code_verifier" not in provider.token_requests[-1]
    assert _account(db, AGENT_EMAIL).name == "Camille Martin"


# --- settings and migration -------------------------------------------------------------------

def test_production_requires_a_registered_client_over_https(tmp_path):
    base = {"SVI_ENV": "production", "DATABASE_URL": "sqlite://", "SECRET_KEY": "s",
            "TWILIO_AUTH_TOKEN": "t", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "PUBLIC_BASE_URL": "https://svi.example.gouv.fr",
            "SVI_CALLER_ID": "+33806000156"}
    assert settings.load(str(tmp_path), environ={}, overrides=base)["OIDC_ISSUER"] == ""
    with pytest.raises(settings.SettingsError, match="OIDC_CLIENT_ID, OIDC_CLIENT_SECRET"):
        settings.load(str(tmp_path), environ={},
                      overrides={**base, "OIDC_ISSUER": "https://auth.agentconnect.gouv.fr/api/v2"})
    with pytest.raises(settings.SettingsError, match="https://"):
        settings.load(str(tmp_path), environ={"OIDC_ISSUER": "http://auth.example/api/v2",
                                             "OIDC_CLIENT_ID": "c", "OIDC_CLIENT_SECRET": "s"},
                      overrides=base)
    loaded = settings.load(str(tmp_path), environ={
        "OIDC_ISSUER": "https://auth.agentconnect.gouv.fr/api/v2", "OIDC_CLIENT_ID": "c",
        "OIDC_CLIENT_SECRET": "s", "OIDC_TIMEOUT": "5"}, overrides=base)
    assert loaded["OIDC_TIMEOUT"] == 5 and loaded["OIDC_PROVIDER_NAME"] == "ProConnect"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_at_0012(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'oidc-migration.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database(
            f"svi_oidc_{tmp_path.name[-8:].lower()}")
    upgrade(url, "0012")
    return url


def test_the_migration_keeps_accounts_and_their_tokens(database_at_0012):
    url = database_at_0012
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (email, name, role, active, created_at, "
                          "session_epoch) VALUES ('ref@example.gouv.fr', '', 'referent', "
                          ":yes, '2026-12-01 10:00:00+00:00', 0)"), {"yes": True})
        conn.execute(text("INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at) "
                          "SELECT id, 'outil', 'svi_abc', 'h', '2026-12-01 10:00:00+00:00' "
                          "FROM users"))
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM api_tokens")).scalar() == 1
            conn.execute(text("INSERT INTO users (email, name, role, active, created_at, "
                              "session_epoch, oidc_issuer, oidc_subject) VALUES "
                              "('sso@example.gouv.fr', '', NULL, :yes, "
                              "'2026-12-01 10:00:00+00:00', 0, 'https://idp', 'abc')"),
                         {"yes": True})
        with pytest.raises(Exception):  # one account per identity
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO users (email, name, role, active, created_at, "
                                  "session_epoch, oidc_issuer, oidc_subject) VALUES "
                                  "('sso2@example.gouv.fr', '', NULL, :yes, "
                                  "'2026-12-01 10:00:00+00:00', 0, 'https://idp', 'abc')"),
                             {"yes": True})
    finally:
        engine.dispose()
