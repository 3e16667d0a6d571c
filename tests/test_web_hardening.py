"""Defects a hostile review of the web interface found, each through the real pages."""

from __future__ import annotations

import socket
import threading
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from accounts.models import Role
from audit.models import AuditEntry
from directory import operations
from tests import factories
from tests.test_web_directory import _edit_form, _export, _upload
from tests.test_web_simulator import _form as _sim_form
from tests.webclient import csrf_token, form_fields, login, make_user, post_form
from tracking.models import Call


def _client(app, db, email, role, departements=()):
    make_user(db, email, role, departements=departements)
    client = app.test_client()
    assert login(client, email).status_code == 302
    return client


def test_a_referent_cannot_reach_another_departement_through_the_simulator(app, db):
    ref = _client(app, db, "ref93@example.gouv.fr", Role.referent, ["93"])
    ref.post("/simulateur/appeler", data=_sim_form(ref, "/simulateur/appeler"))
    fields = _sim_form(ref, "/simulateur/touches")
    fields["digits"] = "75"
    ref.post("/simulateur/touches", data=fields)
    page = ref.get("/simulateur").get_data(as_text=True)
    assert "département 75 hors de vos départements" in page and "Appel terminé" in page
    assert "+33199007501" not in page and "Envoyer" not in page


def test_absurd_or_invisible_values_are_refused_on_their_fields(admin, db):
    fields = _edit_form(admin, "93")
    fields["new_start"], fields["new_reason"] = "9999-12-31", "loin"
    fields["form_url"] = "assistance.gouv.fr/a\x01b"
    page = admin.post("/annuaire/93/modifier", data=fields).get_data(as_text=True)
    assert "hors des années 2000 à 2099" in page
    assert 'id="form_url-erreur"' in page
    assert operations.snapshot(db, "93").exceptions == ()
    fields["new_start_time"] = "25:99"
    page = admin.post("/annuaire/93/modifier", data=fields).get_data(as_text=True)
    assert "N&#39;est pas un horaire valide" in page  # WTForms' messages are French too
    fields = _edit_form(admin, "93")
    fields["lines-1-number"] = "0590 12"
    page = admin.post("/annuaire/93/modifier", data=fields).get_data(as_text=True)
    assert 'Le formulaire contient 1 erreur' in page and 'href="#lines-1-number"' in page


def test_the_edit_page_opens_whatever_the_number_of_periods(admin, db):
    for i in range(510):
        factories.closure(db, "93", date(2027, 1, 1) + timedelta(days=i), reason=f"p{i}")
    fields = _edit_form(admin, "93")
    assert fields["exceptions-499-reason"] == "p499" and "exceptions-500-reason" not in fields
    fields["ring_timeout"] = "33"
    assert admin.post("/annuaire/93/modifier", data=fields).status_code == 302
    assert len(operations.snapshot(db, "93").exceptions) == 510  # those not shown are kept


@pytest.mark.parametrize("query", ["du=0001-01-01", "au=9999-12-31",
                                   "avant=0001-01-01T00:00:00%2B05:00|1",
                                   "avant=2026-01-01T00:00:00%2B00:00|999999999999999999999999",
                                   "departement=%00", "auteur=%00"])
def test_the_audit_log_ignores_filters_it_cannot_use(admin, query):
    assert admin.get(f"/admin/journal?{query}").status_code == 200


def test_one_preview_is_imported_once_even_when_confirmed_twice_at_once(app, admin, db):
    text = _export(admin).decode("utf-8-sig").replace(";successive;20;", ";simultanée;20;", 1)
    confirm = form_fields(_upload(admin, text.encode("utf-8-sig"), "a.csv").get_data(as_text=True))
    confirm["filename"] = "annuaire-officiel.csv"  # a forged name is ignored
    results, start = [], threading.Barrier(2)

    def post():
        start.wait()
        results.append(admin.post("/admin/annuaire/import/confirmer", data=confirm).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = db.scalars(select(AuditEntry).where(AuditEntry.entity == "département")).all()
    assert len(entries) == 1 and entries[0].actor.startswith("import:a.csv ")


def test_another_admin_cannot_confirm_my_preview(app, admin, db):
    other = _client(app, db, "autre@example.gouv.fr", Role.admin)
    text = _export(admin).decode("utf-8-sig").replace(";successive;20;", ";simultanée;20;", 1)
    confirm = form_fields(_upload(admin, text.encode("utf-8-sig"), "a.csv").get_data(as_text=True))
    confirm["csrf_token"] = csrf_token(other, "/admin/annuaire/import")
    other.post("/admin/annuaire/import/confirmer", data=confirm)
    assert operations.snapshot(db, "93").ring_strategy == "sequential"


def test_logout_ends_a_copied_session_and_sessions_end_a_fixed_time_after_login(app, db):
    client = _client(app, db, "ref@example.gouv.fr", Role.referent, ["93"])
    copy = app.test_client()
    cookie = client.get_cookie("svi_session")
    copy.set_cookie("svi_session", cookie.value)
    assert copy.get("/annuaire/93").status_code == 200
    post_form(client, "/deconnexion", {}, page="/annuaire/93")
    assert copy.get("/annuaire/93").status_code == 302  # the copied cookie is worth nothing
    active = app.test_client()
    assert login(active, "ref@example.gouv.fr").status_code == 302
    with active.session_transaction() as session:
        session["login_at"] = time.time() - 9 * 3600  # logged in 9 h ago, active ever since
    response = active.get("/annuaire/93")
    assert response.status_code == 302 and response.headers["Location"].startswith("/connexion")


def test_reset_requests_are_limited_per_account_and_never_wait_for_the_mail_server(app, db):
    make_user(db, "ref@example.gouv.fr", Role.referent, departements=["93"])
    silent = socket.socket()  # accepts connections and never answers, like a stuck server
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=silent.getsockname()[1], SMTP_TIMEOUT=3)
    try:
        client = app.test_client()
        begin = time.monotonic()
        assert post_form(client, "/mot-de-passe-oublie", {"email": "ref@example.gouv.fr"}).status_code == 302
        assert time.monotonic() - begin < 2  # the SMTP timeout (3 s) is not paid by the page
        for _ in range(2):
            post_form(app.test_client(), "/mot-de-passe-oublie", {"email": "ref@example.gouv.fr"})
        assert post_form(app.test_client(), "/mot-de-passe-oublie",
                         {"email": "ref@example.gouv.fr"}).status_code == 429
    finally:
        silent.close()


def test_twilio_paths_get_bare_statuses_and_downloads_are_not_cached(app, admin):
    client = app.test_client()
    for method, path, status in (("GET", "/ivr/voice", 405), ("POST", "/ivr/nope", 404),
                                 ("GET", "/ivr/", 404)):
        response = client.open(path, method=method)
        assert response.status_code == status and response.data == b""
        assert "Content-Security-Policy" not in response.headers
    assert admin.get("/admin/annuaire/export.csv").headers["Cache-Control"] == "no-store"
    assert "no-store" not in (client.get("/static/css/svi.css").headers.get("Cache-Control") or "")


def test_simulator_key_errors_are_told_on_the_field(admin):
    admin.post("/simulateur/appeler", data=_sim_form(admin, "/simulateur/appeler"))
    fields = _sim_form(admin, "/simulateur/touches")
    fields["digits"] = "9a"
    response = admin.post("/simulateur/touches", data=fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="digits-erreur"' in page and "Appel en cours" in page
