"""The JSON API through its real entry points: tokens, scope, validation, writes and their
audit, problem+json errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from accounts import tokens
from accounts.models import ApiToken, Role
from audit.models import AuditEntry
from audit.operations import Actor
from directory.models import Departement
from tests import factories
from tests.webclient import make_user
from tracking.models import Solicitation

AT = datetime(2026, 11, 16, 9, 30, tzinfo=UTC)


def token_for(db, email: str, role: Role, departements=()) -> dict:
    """Authorization headers of a fresh token of a new account."""
    user = make_user(db, email, role, departements)
    _, secret = tokens.create(db, Actor.cli(), user, "tests")
    db.commit()
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def api(app, db):
    """A client and the headers of an admin, a national and a referent of 93."""
    class Api:
        client = app.test_client()
        admin = token_for(db, "admin.api@example.gouv.fr", Role.admin)
        national = token_for(db, "nat.api@example.gouv.fr", Role.national)
        ref93 = token_for(db, "ref93.api@example.gouv.fr", Role.referent, ["93"])
    return Api


def test_no_token_or_a_bad_one_is_a_401_problem(api, db):
    for headers in ({}, {"Authorization": "Bearer svi_nope"}, {"Authorization": "Basic abc"}):
        response = api.client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json["title"] == "Authentification requise"


def test_a_token_acts_as_its_owner_until_revoked(api, db):
    response = api.client.get("/api/v1/me", headers=api.ref93)
    assert response.status_code == 200
    assert response.json["role"] == "referent" and response.json["departements"] == ["93"]
    token = db.scalars(select(ApiToken).join(ApiToken.user)
                       .where(ApiToken.name == "tests")).all()
    assert all(t.token_hash not in api.ref93["Authorization"] for t in token)  # hashed
    for t in token:
        tokens.revoke(db, Actor.cli(), t)
    db.commit()
    assert api.client.get("/api/v1/me", headers=api.ref93).status_code == 401


def test_a_session_cookie_does_not_open_the_api(app, admin):
    response = admin.get("/api/v1/me")
    assert response.status_code == 401


def test_referent_reads_only_their_departements(api, db):
    factories.call(db, departement="93", started_at=AT)
    factories.call(db, departement="75", started_at=AT)
    listed = api.client.get("/api/v1/solicitations", headers=api.ref93).json["items"]
    assert {r["departement"] for r in listed} == {"93"}
    assert api.client.get("/api/v1/solicitations?departement=75",
                          headers=api.ref93).status_code == 403
    other = db.scalars(select(Solicitation).where(Solicitation.departement_code == "75")).one()
    assert api.client.get(f"/api/v1/solicitations/{other.reference}",
                          headers=api.ref93).status_code == 403
    assert api.client.get(f"/api/v1/calls/{other.call_id}", headers=api.ref93).status_code == 403
    assert api.client.get("/api/v1/departements/75", headers=api.ref93).status_code == 403
    codes = [d["code"] for d in api.client.get("/api/v1/departements", headers=api.ref93).json]
    assert codes == ["93"]
    assert api.client.get("/api/v1/indicators", headers=api.ref93).status_code == 403
    assert api.client.get("/api/v1/indicators?departement=93",
                          headers=api.ref93).status_code == 200
    assert api.client.get("/api/v1/workbooks/2026-Q4/departement-75.xlsx",
                          headers=api.ref93).status_code == 403


def test_list_pages_with_a_cursor_and_filters(api, db):
    for minute in range(5):
        factories.call(db, departement="93", started_at=AT.replace(minute=minute))
    first = api.client.get("/api/v1/solicitations?limit=2", headers=api.national).json
    assert len(first["items"]) == 2 and first["next"]
    second = api.client.get(f"/api/v1/solicitations?limit=2&after={first['next']}",
                            headers=api.national).json
    assert {r["reference"] for r in first["items"]}.isdisjoint(
        r["reference"] for r in second["items"])
    bad = api.client.get("/api/v1/solicitations?after=%%%&limit=0&outcome=nope",
                         headers=api.national)
    assert bad.status_code == 422
    assert set(bad.json["errors"]["query"]) == {"limit", "outcome"}
    assert "de 1 à 200" in bad.json["errors"]["query"]["limit"][0]


def test_qualify_with_two_motifs_then_a_stale_version_is_refused(api, db):
    call = factories.call(db, departement="93", started_at=AT)
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()
    detail = api.client.get(f"/api/v1/solicitations/{row.reference}", headers=api.ref93).json
    body = {"motifs": [{"thematique": "usage", "motif": "doublons"},
                       {"thematique": "usage", "motif": "saisie"}],
            "comment": "deux sujets", "resolved": True, "version": detail["version"]}
    done = api.client.put(f"/api/v1/solicitations/{row.reference}/qualification",
                          json=body, headers=api.ref93)
    assert done.status_code == 200, done.json
    assert len(done.json["rows"]) == 2 and done.json["motif"]["key"] == "doublons"
    again = api.client.put(f"/api/v1/solicitations/{row.reference}/qualification",
                           json=body, headers=api.ref93)
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    unknown = api.client.put(f"/api/v1/solicitations/{row.reference}/qualification",
                             json={"motifs": [{"thematique": "usage", "motif": "inconnu"}]},
                             headers=api.ref93)
    assert unknown.status_code == 422 and "motifs" in unknown.json["errors"]["json"]
    db.expire_all()
    assert db.scalar(select(Solicitation.comment).where(
        Solicitation.reference == row.reference)) == "deux sujets"
    [entry] = db.scalars(select(AuditEntry).where(AuditEntry.entity == "sollicitation")).all()
    assert entry.actor.startswith("api:") and entry.summary == f"{row.reference} qualifiée : 2 motif(s)"


def test_add_an_email_solicitation(api, db):
    response = api.client.post("/api/v1/solicitations", headers=api.ref93, json={
        "departement": "93", "occurred_at": "2026-11-20T10:15:00", "channel": "email",
        "thematique": "usage", "motif": "saisie", "comment": "par courriel"})
    assert response.status_code == 201, response.json
    assert response.json["occurred_at"].startswith("2026-11-20T10:15:00+01:00")
    refused = api.client.post("/api/v1/solicitations", headers=api.ref93, json={
        "departement": "75", "occurred_at": "2026-11-20T10:15:00", "channel": "email"})
    assert refused.status_code == 403
    bad = api.client.post("/api/v1/solicitations", headers=api.ref93, json={
        "departement": "93", "occurred_at": "1850-01-01T10:00:00", "channel": "phone_svi",
        "comment": "nul\x00", "extra": 1})
    assert bad.status_code == 422
    assert set(bad.json["errors"]["json"]) == {"occurred_at", "channel", "comment", "extra"}


def test_admin_writes_the_directory_with_its_rules_and_audit(api, db):
    current = api.client.get("/api/v1/departements/93", headers=api.admin).json
    body = {k: v for k, v in current.items() if k not in ("code", "name", "timezone")}
    body["ring_timeout"] = 25
    body["lines"] = [{"number": "01 99 00 93 01", "label": "accueil"}]
    saved = api.client.put("/api/v1/departements/93", json=body, headers=api.admin)
    assert saved.status_code == 200, saved.json
    assert saved.json["departement"]["lines"] == [{"number": "+33199009301", "label": "accueil"}]
    assert {c["field"] for c in saved.json["changes"]} >= {"Durée de sonnerie (s)"}
    entry = db.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert entry.actor == "api:admin.api@example.gouv.fr" and entry.departement_code == "93"
    stale = api.client.put("/api/v1/departements/93", json=body, headers=api.admin)
    assert stale.status_code == 409
    body["version"] = saved.json["departement"]["version"]
    body["lines"] = [{"number": "12", "label": ""}]
    body["slots"] = [{"weekday": 0, "start": "12:00", "end": "09:00"}]
    bad = api.client.put("/api/v1/departements/93", json=body, headers=api.admin)
    assert bad.status_code == 422
    assert {"lines.0.number", "slots.0"} <= set(bad.json["errors"]["json"])
    assert db.get(Departement, "93").version == body["version"]  # nothing written
    assert api.client.put("/api/v1/departements/93", json=body,
                          headers=api.national).status_code == 403


def test_indicators_are_the_dashboards(api, db):
    factories.call(db, departement="93", started_at=AT)
    response = api.client.get("/api/v1/indicators?quarter=2026-Q4", headers=api.national)
    assert response.status_code == 200
    assert response.json["figures"]["received"] == 1
    assert response.json["figures"]["answered"] == 1
    assert api.client.get("/api/v1/indicators?quarter=2026-Q9",
                          headers=api.national).status_code == 422


def test_workbook_download(api, db):
    response = api.client.get("/api/v1/workbooks/2026-Q4/national.xlsx", headers=api.national)
    assert response.status_code == 200 and response.data[:2] == b"PK"
    assert api.client.get("/api/v1/workbooks/2026-Q4/autre.xlsx",
                          headers=api.national).status_code == 404


def test_openapi_document_and_its_page(app):
    client = app.test_client()
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.") and "/api/v1/solicitations" in spec["paths"]
    page = client.get("/api/")
    assert page.status_code == 200 and "PUT /api/v1/departements/{code}" in page.get_data(as_text=True)


def test_token_page_shows_the_secret_once_and_a_resubmit_creates_nothing(app, db):
    from tests.webclient import login, post_form
    make_user(db, "page.jetons@example.gouv.fr", Role.national)
    client = app.test_client()
    login(client, "page.jetons@example.gouv.fr")
    created = post_form(client, "/mon-compte/jetons/", {"name": "BI", "days": "30"})
    assert created.status_code == 201
    secret = created.get_data(as_text=True).split('value="svi_')[1].split('"')[0]
    again = post_form(client, "/mon-compte/jetons/", {"name": "bi", "days": "30"})
    assert again.status_code == 400 and "appelle déjà" in again.get_data(as_text=True)
    assert "svi_" + secret not in client.get("/mon-compte/jetons/").get_data(as_text=True)
    assert db.scalar(select(ApiToken.token_hash).where(ApiToken.name == "BI")) != secret
    assert len(db.scalars(select(ApiToken)).all()) == 1
    assert post_form(client, "/mon-compte/jetons/", {"name": "x", "days": "0"}).status_code == 400
