"""Accounts through the real pages and commands: login, sessions, rate limits, password reset,
the `users` commands, the first admin, security headers and cookies."""

from __future__ import annotations

import re
import time
from email import policy as email_policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from accounts import operations
from accounts.models import Role, User
from app import create_app
from audit.models import AuditEntry
from tests.webclient import PASSWORD, csrf_token, login, make_user, post_form


@pytest.fixture
def outbox(app, tmp_path):
    app.config.update(MAIL_OUTBOX_DIR=str(tmp_path / "outbox"), SMTP_HOST="")
    return tmp_path / "outbox"


def _mails(folder, expected: int = 1):
    """The messages in the outbox, once `expected` of them are there (mail leaves in a thread)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(list(folder.glob("*.eml")) if folder.exists() else []) < expected:
        time.sleep(0.05)
    return [BytesParser(policy=email_policy.default).parsebytes(p.read_bytes())
            for p in sorted(folder.glob("*.eml"))] if folder.exists() else []


def test_login_then_logout(app, db):
    make_user(db, "admin@example.gouv.fr", Role.admin)
    client = app.test_client()
    response = login(client, "Admin@Example.gouv.fr ", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").headers["Location"] == "/annuaire/"
    assert "Annuaire des départements" in client.get("/annuaire/").get_data(as_text=True)
    assert post_form(client, "/deconnexion", {}, page="/annuaire/").status_code == 302
    assert client.get("/annuaire/").status_code == 302  # back to the login page


def test_wrong_password_unknown_account_and_disabled_account_are_refused(app, db):
    user = make_user(db, "ref@example.gouv.fr", Role.referent, departements=["93"])
    client = app.test_client()
    for email, password in (("ref@example.gouv.fr", "mauvais mot de passe"),
                            ("personne@example.gouv.fr", PASSWORD)):
        page = login(client, email, password)
        assert page.status_code == 200
        assert "Adresse ou mot de passe incorrect" in page.get_data(as_text=True)
    db.get(User, user.id).active = False
    db.commit()
    assert login(client, "ref@example.gouv.fr").status_code == 200


def test_a_disabled_account_or_a_new_password_ends_open_sessions(app, db):
    from audit.operations import Actor
    user = make_user(db, "ref@example.gouv.fr", Role.referent, departements=["93"])
    client = app.test_client()
    assert login(client, "ref@example.gouv.fr").status_code == 302
    assert client.get("/annuaire/93").status_code == 200
    operations.set_password(db, Actor.cli(), db.get(User, user.id), "un tout autre mot de passe")
    db.commit()
    assert client.get("/annuaire/93").status_code == 302  # logged out
    assert login(client, "ref@example.gouv.fr", "un tout autre mot de passe").status_code == 302
    operations.set_active(db, Actor.cli(), db.get(User, user.id), False)
    db.commit()
    assert client.get("/annuaire/93").status_code == 302


def test_login_attempts_are_limited_per_account_and_per_address(app, db):
    make_user(db, "admin@example.gouv.fr", Role.admin)
    app.config.update(LOGIN_LIMIT_PER_ACCOUNT="3 per 15 minutes",
                      LOGIN_LIMIT_PER_ADDRESS="5 per 10 minutes")
    attacker = app.test_client()
    for _ in range(3):
        assert login(attacker, "admin@example.gouv.fr", "devine-devine").status_code == 200
    # The account is locked for a while, even with the right password…
    locked = login(attacker, "admin@example.gouv.fr")
    assert locked.status_code == 429
    assert "Trop de tentatives" in locked.get_data(as_text=True)
    # …and the same address soon cannot try other accounts either.
    for _ in range(2):
        login(attacker, "autre@example.gouv.fr", "devine-devine")
    assert login(attacker, "encore@example.gouv.fr", "x").status_code == 429


def test_a_successful_login_does_not_count_against_the_limit(app, db):
    make_user(db, "admin@example.gouv.fr", Role.admin)
    app.config.update(LOGIN_LIMIT_PER_ACCOUNT="2 per 15 minutes")
    for _ in range(4):
        client = app.test_client()
        assert login(client, "admin@example.gouv.fr").status_code == 302


def test_password_reset_link_works_once(app, db, outbox):
    make_user(db, "ref@example.gouv.fr", Role.referent, departements=["93"])
    client = app.test_client()
    # Unknown addresses get the same answer and no mail.
    for email in ("ref@example.gouv.fr", "inconnu@example.gouv.fr"):
        response = post_form(client, "/mot-de-passe-oublie", {"email": email})
        assert response.status_code == 302
    mails = _mails(outbox)
    assert len(mails) == 1 and mails[0]["To"] == "ref@example.gouv.fr"
    link = re.search(r"https://svi\.example\.gouv\.fr(/reinitialiser/\S+)",
                     mails[0].get_content()).group(1)
    short = post_form(client, link, {"password": "court", "confirm": "court"})
    assert short.status_code == 200 and "Au moins 12 caractères" in short.get_data(as_text=True)
    done = post_form(client, link, {"password": "nouveau mot de passe solide",
                                    "confirm": "nouveau mot de passe solide"})
    assert done.status_code == 302 and done.headers["Location"] == "/connexion"
    assert login(client, "ref@example.gouv.fr", "nouveau mot de passe solide").status_code == 302
    # The same link cannot be used again.
    again = app.test_client().get(link)
    assert again.status_code == 302 and again.headers["Location"] == "/mot-de-passe-oublie"
    audit = db.scalars(select(AuditEntry.summary)).all()
    assert "mot de passe changé : ref@example.gouv.fr" in audit


def test_an_expired_or_forged_reset_link_is_refused(app, db, monkeypatch):
    user = make_user(db, "ref@example.gouv.fr", Role.referent, departements=["93"])
    token = operations.reset_token(app.config["SECRET_KEY"], user)
    assert operations.user_for_reset(db, app.config["SECRET_KEY"], token).id == user.id
    assert operations.user_for_reset(db, "autre-secret", token) is None
    assert operations.user_for_reset(db, app.config["SECRET_KEY"], token[:-2] + "xx") is None
    monkeypatch.setattr(operations, "RESET_MAX_AGE", -1)
    assert operations.user_for_reset(db, app.config["SECRET_KEY"], token) is None


def test_forms_without_csrf_token_are_refused(app, db):
    make_user(db, "admin@example.gouv.fr", Role.admin)
    client = app.test_client()
    response = client.post("/connexion", data={"email": "admin@example.gouv.fr",
                                               "password": PASSWORD})
    assert response.status_code == 400
    assert login(client, "admin@example.gouv.fr").status_code == 302
    assert client.post("/deconnexion").status_code == 400  # logout cannot be forged either


def test_security_headers_and_no_open_redirect(app, db):
    make_user(db, "admin@example.gouv.fr", Role.admin)
    client = app.test_client()
    page = client.get("/connexion")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.get_data(as_text=True)  # no inline script anywhere
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # PUBLIC_BASE_URL is https in the tests
    token = csrf_token(client, "/connexion?next=//evil.example/x")
    response = client.post("/connexion?next=//evil.example/x",
                           data={"email": "admin@example.gouv.fr", "password": PASSWORD,
                                 "csrf_token": token})
    assert response.headers["Location"] == "/"
    # Twilio's webhooks keep their own answers (no CSP on TwiML, no CSRF on signed posts).
    assert "Content-Security-Policy" not in client.post("/ivr/voice").headers


def test_users_commands_and_their_audit(app, db):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "Ref@Example.gouv.fr", "--role", "referent",
                                 "--departements", "93,2a", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    refused = runner.invoke(args=["users", "create", "x@example.gouv.fr", "--role", "referent",
                                  "--password", PASSWORD])
    assert refused.exit_code != 0 and "au moins un département" in refused.output
    weak = runner.invoke(args=["users", "create", "y@example.gouv.fr", "--role", "admin",
                               "--password", "court"])
    assert weak.exit_code != 0 and "12 caractères" in weak.output
    listing = runner.invoke(args=["users", "list"]).output
    assert "ref@example.gouv.fr\tréférent\t2A,93\tactif" in listing
    assert runner.invoke(args=["users", "grant", "ref@example.gouv.fr", "--role", "national"]).exit_code == 0
    assert runner.invoke(args=["users", "disable", "ref@example.gouv.fr"]).exit_code == 0
    assert runner.invoke(args=["users", "set-password", "ref@example.gouv.fr",
                               "--password", "encore un mot de passe"]).exit_code == 0
    assert "désactivé" in runner.invoke(args=["users", "list"]).output
    entries = db.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [e.summary for e in entries] == [
        "compte créé : ref@example.gouv.fr", "droits modifiés : ref@example.gouv.fr",
        "compte désactivé : ref@example.gouv.fr", "mot de passe changé : ref@example.gouv.fr"]
    assert all(e.actor.startswith("cli:") for e in entries)
    assert entries[1].changes["rôle"] == ["référent", "équipe nationale"]
    assert entries[1].changes["départements"] == ["2A, 93", None]
    stored = db.scalar(select(User).where(User.email == "ref@example.gouv.fr"))
    assert stored.password_hash.startswith("$argon2id$")


def test_setup_creates_the_first_admin_once(app, db):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["setup"])
    assert first.exit_code == 0, first.output
    password = re.search(r"mot de passe : (\S+)", first.output).group(1)
    assert "admin@example.gouv.fr" in first.output
    assert login(app.test_client(), "admin@example.gouv.fr", password).status_code == 302
    second = runner.invoke(args=["setup"])
    assert "mot de passe" not in second.output


def test_production_cookies_are_secure(tmp_path, database_urls):
    application = create_app({"SVI_ENV": "production", "DATABASE_URL": database_urls("sqlite"),
                              "SECRET_KEY": "s", "TWILIO_AUTH_TOKEN": "t",
                              "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                              "PUBLIC_BASE_URL": "https://svi.example.gouv.fr",
                              "SVI_CALLER_ID": "+33806000156"})
    assert application.config["SESSION_COOKIE_SECURE"] is True
    assert application.config["SESSION_COOKIE_HTTPONLY"] is True


def test_a_user_changes_their_password_and_other_sessions_end(app, db):
    make_user(db, "ref@example.gouv.fr", Role.referent, departements=["93"])
    here, elsewhere = app.test_client(), app.test_client()
    for client in (here, elsewhere):
        assert login(client, "ref@example.gouv.fr").status_code == 302
    page = here.get("/mon-compte").get_data(as_text=True)
    assert "référent, départements : 93" in page
    wrong = post_form(here, "/mon-compte", {"current": "pas le bon", "password": "x" * 12,
                                             "confirm": "x" * 12})
    assert wrong.status_code == 200 and "Mot de passe actuel incorrect" in wrong.get_data(as_text=True)
    done = post_form(here, "/mon-compte", {"current": PASSWORD, "password": "nouvelle phrase longue",
                                            "confirm": "nouvelle phrase longue"})
    assert done.status_code == 302
    assert here.get("/annuaire/93").status_code == 200  # this session follows the new password
    assert elsewhere.get("/annuaire/93").status_code == 302  # the other one ended
    assert login(app.test_client(), "ref@example.gouv.fr", "nouvelle phrase longue").status_code == 302
