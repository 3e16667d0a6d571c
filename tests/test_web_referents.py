"""« Mes appels » through the real pages, on SQLite and PostgreSQL: the list (filtered, cut by
keyset, restricted to the user's départements), a call's detail and timeline, qualification with
several motifs, a solicitation added by hand, and the all-or-nothing workbook import."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest
from sqlalchemy import func, select

from accounts.models import Role
from audit.models import AuditEntry
from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record
from tests.webclient import csrf_token, form_fields, login, make_user, post_form
from tracking import listing
from tracking.columns import HEADERS
from tracking.models import Channel, Outcome, Solicitation, Source

REF93 = "ref93@example.gouv.fr"
_REFS = re.compile(r'href="/appels/(S-[0-9A-Z]{10})"')


@pytest.fixture
def ref93(app, db):
    """A client logged in as the referent of 93."""
    make_user(db, REF93, Role.referent, departements=["93"])
    client = app.test_client()
    assert login(client, REF93).status_code == 302
    return client


def _refs(html: str) -> list[str]:
    return _REFS.findall(html)


def _next_link(html: str) -> str | None:
    match = re.search(r'href="(/appels/\?[^"]*apres=[^"]*)" rel="next"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def _fill(fields, values: dict) -> None:
    """Set form fields as a person would (replacing, unlike MultiDict.update)."""
    for name, value in values.items():
        fields[name] = value


def _audit(db) -> list[AuditEntry]:
    db.expire_all()
    return db.scalars(select(AuditEntry).where(AuditEntry.entity == "sollicitation")
                      .order_by(AuditEntry.id)).all()


def _count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Solicitation))


def test_list_is_newest_first_paginated_by_keyset_and_keeps_filters(app, db, ref93, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 3)
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    calls = [factories.call(db, departement="93", started_at=start + timedelta(hours=i),
                            outcome=Outcome.answered if i % 2 else Outcome.no_answer)
             for i in range(8)]
    factories.call(db, departement="75", started_at=start + timedelta(hours=20))
    by_call = {r.call_id: r.reference for r in db.scalars(select(Solicitation))}
    newest_first = [by_call[c.id] for c in reversed(calls)]

    page1 = ref93.get("/appels/").get_data(as_text=True)
    assert _refs(page1) == newest_first[:3]  # the newer 75 call is nobody's business here
    assert "01/12/2026 17:00" in page1  # 16:00 UTC shown in Paris time

    # A row recorded meanwhile (newer than all) does not shift the next page.
    factories.call(db, departement="93", started_at=start + timedelta(hours=30))
    page2 = ref93.get(_next_link(page1)).get_data(as_text=True)
    assert _refs(page2) == newest_first[3:6]
    page3 = ref93.get(_next_link(page2)).get_data(as_text=True)
    assert _refs(page3) == newest_first[6:8]
    assert _next_link(page3) is None

    # Filters travel with the cursor.
    filtered = ref93.get("/appels/?issue=no_answer").get_data(as_text=True)
    wanted = [by_call[c.id] for c in reversed(calls) if c.outcome is Outcome.no_answer]
    assert _refs(filtered) == wanted[:3]
    link = _next_link(filtered)
    assert "issue=no_answer" in link
    assert _refs(ref93.get(link).get_data(as_text=True)) == wanted[3:]


def test_filters_period_channel_and_to_qualify(app, db, admin):
    factories.call(db, departement="93", started_at=datetime(2026, 11, 30, 22, 30, tzinfo=UTC))
    email = factories.solicitation_row(db, departement="974", channel=Channel.email,
                                       occurred_at=datetime(2026, 11, 30, 21, 0, tzinfo=UTC),
                                       thematique="usage", motif="doublons")
    # 21:00 UTC is 01:00 on 1 December in La Réunion; 22:30 UTC is 23:30 on 30 November in Paris.
    december = admin.get("/appels/?du=2026-12-01&au=2026-12-01").get_data(as_text=True)
    assert _refs(december) == [email.reference]
    november = admin.get("/appels/?du=2026-11-30&au=2026-11-30").get_data(as_text=True)
    assert email.reference not in _refs(november) and len(_refs(november)) == 1
    assert _refs(admin.get("/appels/?canal=email").get_data(as_text=True)) == [email.reference]
    assert email.reference not in _refs(admin.get("/appels/?a_qualifier=y").get_data(as_text=True))
    assert _refs(admin.get("/appels/?thematique=usage").get_data(as_text=True)) == [email.reference]
    wrong = admin.get("/appels/?du=2026-12-02&au=2026-12-01")
    assert wrong.status_code == 200
    assert 'aria-describedby="au-erreur"' in wrong.get_data(as_text=True)


def test_referent_of_93_never_reaches_75(app, db, ref93):
    mine = factories.call(db, departement="93")
    theirs = factories.call(db, departement="75")
    refs = {r.call_id: r.reference for r in db.scalars(select(Solicitation))}
    other = factories.solicitation_row(db, departement="75")
    assert ref93.get(f"/appels/{refs[theirs.id]}").status_code == 403
    assert ref93.get(f"/appels/{other.reference}").status_code == 403
    assert ref93.get("/appels/S-0000000000").status_code == 404
    assert ref93.post(f"/appels/{refs[theirs.id]}/qualifier",
                      data={"csrf_token": csrf_token(ref93, "/appels/nouvelle")}).status_code == 403
    assert ref93.get(f"/appels/{refs[mine.id]}").status_code == 200
    for crafted in ("/appels/", "/appels/?departement=75", "/appels/?departement=75&departement=93",
                    "/appels/?departement=%2075"):
        listed = _refs(ref93.get(crafted).get_data(as_text=True))
        assert refs[theirs.id] not in listed and other.reference not in listed
    # Adding a row to 75 is refused by the form (not among the choices).
    response = post_form(ref93, "/appels/nouvelle", {
        "departement": "75", "jour": "2026-12-21", "heure": "10:00", "canal": "email"})
    assert response.status_code == 400
    assert _count(db) == 3


def test_detail_shows_the_timeline_in_french(app, db, ref93, twilio, clock):
    clock.set("2026-12-21T10:00")
    t = twilio.call(caller="+33612345678", keys=["93", "1", "2"],
                    referents=[Referent("accept", talk_seconds=95)])
    call = call_record(db, t.call_sid)
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()
    page = ref93.get(f"/appels/{row.reference}").get_data(as_text=True)
    assert "Appel reçu de +336••••••78" in page
    assert "Étape : saisie du numéro de département, touches tapées « 93 »" in page
    assert "Ligne +33199009301 appelée : terminé, appel accepté par le référent" in page
    assert "Fin de l&#39;appel : décroché" in page or "Fin de l'appel : décroché" in page
    assert "conversation 1 min 35 s" in page


def test_qualification_with_two_motifs_creates_two_rows(app, db, ref93, admin):
    call = factories.call(db, departement="93", thematique="usage")
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()
    url = f"/appels/{row.reference}"
    fields = form_fields(ref93.get(url).get_data(as_text=True))
    _fill(fields, {"motifs-0-thematique": "usage", "motifs-0-motif": "usage/doublons",
                   "motifs-1-thematique": "habilitations", "motifs-1-motif": "habilitations/creation",
                   "commentaire": "doublon puis\r\ncréation de compte", "resolu": "oui"})
    response = ref93.post(f"{url}/qualifier", data=fields)
    assert response.status_code == 302, response.get_data(as_text=True)
    db.expire_all()
    rows = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)
                      .order_by(Solicitation.id)).all()
    assert [(r.thematique.key, r.motif.key, r.is_primary, r.resolved_first_level) for r in rows] == [
        ("usage", "doublons", True, True), ("habilitations", "creation", False, True)]
    assert rows[0].comment == "doublon puis\ncréation de compte"
    page = ref93.get(url).get_data(as_text=True)
    assert rows[1].reference in page and "Création de compte" in page
    [entry] = _audit(db)
    assert (entry.actor, entry.departement_code, entry.summary) == (
        f"utilisateur:{REF93}", "93", f"{row.reference} qualifiée : 2 motif(s)")
    assert entry.changes[f"{row.reference}, commentaire"] == ["", "doublon puis\ncréation de compte"]
    journal = admin.get("/admin/journal?departement=93").get_data(as_text=True)
    assert f'<a href="/appels/{row.reference}">{row.reference}</a> qualifiée : 2 motif(s)' in journal


def test_qualification_refuses_a_motif_of_another_thematique(app, db, ref93):
    call = factories.call(db, departement="93")
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()
    url = f"/appels/{row.reference}"
    fields = form_fields(ref93.get(url).get_data(as_text=True))
    _fill(fields, {"motifs-0-thematique": "usage", "motifs-0-motif": "habilitations/creation",
                   "commentaire": "bad\u200bchar"})
    response = ref93.post(f"{url}/qualifier", data=fields)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "ce motif n&#39;appartient pas à la thématique choisie" in html
    assert 'aria-describedby="motifs-0-motif-erreur"' in html
    db.expire_all()
    assert db.get(Solicitation, row.id).motif_id is None


def test_referent_adds_an_email_solicitation(app, db, ref93):
    fields = form_fields(ref93.get("/appels/nouvelle").get_data(as_text=True))
    _fill(fields, {"jour": "2026-12-18", "heure": "15:45", "canal": "email",
                   "motif-thematique": "habilitations", "motif-motif": "habilitations/connexion",
                   "commentaire": "mot de passe oublié"})
    assert fields["departement"] == "93"  # their only département, preselected
    response = ref93.post("/appels/nouvelle", data=fields)
    assert response.status_code == 302, response.get_data(as_text=True)
    db.expire_all()
    row = db.scalars(select(Solicitation)).one()
    assert (row.departement_code, row.channel, row.source, row.motif.key, row.comment) == (
        "93", Channel.email, Source.manual, "connexion", "mot de passe oublié")
    assert row.occurred_at == datetime(2026, 12, 18, 14, 45, tzinfo=UTC)
    assert response.headers["Location"] == f"/appels/{row.reference}"
    [entry] = _audit(db)
    assert entry.summary == f"{row.reference} ajoutée (Courriel)"
    assert entry.changes[row.reference] == ["", "Habilitations et comptes › Mot de passe et connexion"]


def test_add_form_errors_are_tied_to_their_fields(app, db, ref93):
    response = post_form(ref93, "/appels/nouvelle", {"departement": "93", "jour": "", "heure": "10:00",
                                                     "canal": "", "motif-motif": "usage/doublons"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    for field in ("jour", "canal"):
        assert f'aria-describedby="{field}-erreur"' in html
    assert _count(db) == 0


def _book(path, rows):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Historique des sollicitations"
    ws.append(list(HEADERS))
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


def _row(code="93", motif="Traitement des doublons", ref=""):
    return (ref, datetime(2026, 11, 3, 14, 20), code, "Courriel", "Usage du SI", motif, None, None,
            None, None, None, None, "", None, "oui")


def _upload(client, path):
    token = csrf_token(client, "/appels/import")
    with open(path, "rb") as f:
        return client.post("/appels/import", data={"csrf_token": token, "fichier": (f, path.name)},
                           content_type="multipart/form-data")


def test_workbook_import_with_a_bad_cell_shows_it_and_writes_nothing(app, db, ref93, tmp_path):
    path = _book(tmp_path / "93.xlsx", [_row(), _row(motif="Motif inventé"), _row(code="75")])
    response = _upload(ref93, path)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "rien n&#39;a été modifié" in html
    assert "<td>3</td><td>Motif</td><td>« Motif inventé » n&#39;est pas un motif de « Usage du SI »</td>" in html
    assert "<td>4</td><td>Département</td>" in html and "département « 75 »" in html
    assert _count(db) == 0
    good = _book(tmp_path / "93-ok.xlsx", [_row(), _row(motif="Radiation et dé-radiation")])
    response = _upload(ref93, good)
    assert response.status_code == 302
    assert _count(db) == 2
    # The refused import wrote nothing, not even to the audit log; the good one is there.
    [entry] = _audit(db)
    assert (entry.actor, entry.departement_code, entry.summary) == (
        f"import:93-ok.xlsx (utilisateur:{REF93})", "93",
        "classeur importé : 2 ligne(s) ajoutée(s), 0 mise(s) à jour")


def test_referent_cannot_requalify_another_departement_row_by_import(app, db, ref93, tmp_path):
    other = factories.solicitation_row(db, departement="75")
    path = _book(tmp_path / "x.xlsx", [_row(ref=other.reference)])
    html = _upload(ref93, path).get_data(as_text=True)
    assert f"« {other.reference} » est une ligne du département « 75 »" in html
    db.expire_all()
    assert db.get(Solicitation, other.id).motif_id is None
