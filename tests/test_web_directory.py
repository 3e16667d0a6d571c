"""The directory in the web pages: overview, edit (validation, optimistic locking, audit),
year view, import with preview, and what callers will hear; real pages, real database."""

from __future__ import annotations

import io
from datetime import date

import openpyxl
import pytest
from sqlalchemy import select

from accounts.models import Role
from audit.models import AuditEntry
from directory import io as directory_io
from directory import operations
from tests import factories
from ivr.simulator import Referent
from tests.webclient import csrf_token, form_fields, login, make_user


def _set(fields, values: dict) -> None:
    """Replace form values (MultiDict.update would add a second value)."""
    for name, value in values.items():
        fields[name] = value


def _edit_form(client, code):
    page = client.get(f"/annuaire/{code}/modifier")
    assert page.status_code == 200
    return form_fields(page.get_data(as_text=True))


def test_overview_shows_every_departement_now_and_filters(admin, clock):
    page = admin.get("/annuaire/").get_data(as_text=True)
    assert "Départements : 101 sur 101" in page
    assert "Seine-Saint-Denis" in page and "Mayotte" in page
    overseas = admin.get("/annuaire/?zone=outre-mer").get_data(as_text=True)
    assert "Départements : 5 sur 101" in overseas
    without = admin.get("/annuaire/?etat=sans-assistance").get_data(as_text=True)
    assert "La Réunion" in without and "Seine-Saint-Denis" not in without
    assert "Départements : 1 sur 101" in admin.get("/annuaire/?q=gard").get_data(as_text=True)


def test_admin_changes_a_line_and_the_next_call_dials_it(admin, db, twilio):
    fields = _edit_form(admin, "93")
    assert fields["lines-0-number"] == "+33 1 99 00 93 01"
    fields["lines-0-number"] = "01 99 00 93 77"
    fields["lines-0-label"] = "Accueil"
    response = admin.post("/annuaire/93/modifier", data=fields)
    assert response.status_code == 302, response.get_data(as_text=True)
    t = twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[Referent("accept")])
    assert t.dialled[0] == ["+33199009377"]
    entry = db.scalars(select(AuditEntry).where(AuditEntry.departement_code == "93")).one()
    assert entry.actor == "utilisateur:admin@example.gouv.fr"
    assert entry.changes["Lignes"] == ["+33199009301 ; +33261919302", "+33199009377 ; +33261919302"]
    assert operations.snapshot(db, "93").lines[0].label == "Accueil"


def test_wrong_values_are_told_on_their_fields_and_nothing_is_saved(admin, db):
    fields = _edit_form(admin, "971")
    fields["lines-0-number"] = "0590 12 34 56"  # valid for Guadeloupe, parsed with its region
    fields["lines-1-number"] = "0590 12"
    fields["ring_timeout"] = "500"
    fields["tuesday"] = "14:00-12:00"
    fields["email"] = "pas-une-adresse"
    response = admin.post("/annuaire/971/modifier", data=fields)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "numéro de téléphone invalide pour la région GP : « 0590 12 »" in page.replace("&#39;", "'").lower() or "0590 12" in page
    assert 'id="lines-1-number-erreur"' in page and 'aria-describedby="lines-1-number-erreur"' in page
    assert 'id="ring_timeout-erreur"' in page and 'id="tuesday-erreur"' in page
    assert 'id="email-erreur"' in page
    assert operations.snapshot(db, "971").lines == ()
    assert db.scalars(select(AuditEntry).where(AuditEntry.entity != "compte")).all() == []
    _set(fields, {"lines-1-number": "", "ring_timeout": "30", "tuesday": "09:00-12:00",
                  "email": "assistance-971@example.gouv.fr"})
    assert admin.post("/annuaire/971/modifier", data=fields).status_code == 302
    view = operations.snapshot(db, "971")
    assert [line.number for line in view.lines] == ["+590590123456"]
    assert view.ring_timeout == 30


def test_closing_a_day_shows_in_the_preview_and_the_year(admin, db, clock):
    fields = _edit_form(admin, "75")
    _set(fields, {"new_kind": "closure", "new_start": "2026-12-22", "new_end": "",
                  "new_reason": "inventaire annuel"})
    assert admin.post("/annuaire/75/modifier", data=fields).status_code == 302
    page = admin.get("/apercu?departement=75&day=2026-12-22&at=10:00&caller=nouveau&thematique="
                     "&referent=accept&voicemail=0").get_data(as_text=True)
    assert "Issue de l'appel : <strong>hors horaires</strong>" in page
    assert "inventaire annuel" in page
    year = admin.get("/annuaire/75/annee").get_data(as_text=True)
    assert "fermeture exceptionnelle, inventaire annuel" in year
    assert "Noël" in year
    moselle = admin.get("/annuaire/57/annee").get_data(as_text=True)
    assert "Saint-Étienne" in moselle and "Vendredi saint" in moselle
    # Removing the period is one checkbox away.
    fields = _edit_form(admin, "75")
    fields["exceptions-0-remove"] = "y"
    assert admin.post("/annuaire/75/modifier", data=fields).status_code == 302
    assert operations.snapshot(db, "75").exceptions == ()


def test_the_second_of_two_concurrent_saves_is_refused(app, admin, db):
    make_user(db, "autre@example.gouv.fr", Role.admin)
    other = app.test_client()
    assert login(other, "autre@example.gouv.fr").status_code == 302
    mine, theirs = _edit_form(admin, "93"), _edit_form(other, "93")
    theirs["ring_timeout"] = "45"
    assert other.post("/annuaire/93/modifier", data=theirs).status_code == 302
    mine["voicemail_enabled"] = ""  # a change of my own, on the version I loaded
    del mine["voicemail_enabled"]
    refused = admin.post("/annuaire/93/modifier", data=mine)
    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert "Vos modifications n'ont pas été enregistrées" in page
    assert "utilisateur:autre@example.gouv.fr" in page
    view = operations.snapshot(db, "93")
    assert view.ring_timeout == 45 and view.voicemail_enabled  # theirs kept, mine not applied


def _upload(admin, data: bytes, filename: str):
    """Upload a file on the import page, as its form does."""
    return admin.post("/admin/annuaire/import", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(admin, "/admin/annuaire/import"),
        "file": (io.BytesIO(data), filename)})


def _export(admin, fmt="csv") -> bytes:
    response = admin.get(f"/admin/annuaire/export.{fmt}")
    assert response.status_code == 200
    return response.data


def test_import_with_bad_cells_shows_every_one_and_changes_nothing(admin, db):
    text = _export(admin).decode("utf-8-sig")
    text = text.replace("+33199009301", "+33 1 99", 1).replace(";successive;20;", ";parfois;20;", 1)
    response = _upload(admin, text.encode("utf-8-sig"), "annuaire.csv")
    page = response.get_data(as_text=True)
    assert "2 cellules à corriger" in page
    assert "Lignes" in page and "Sonnerie" in page
    assert operations.snapshot(db, "93").ring_strategy == "sequential"
    assert db.scalars(select(AuditEntry).where(AuditEntry.entity != "compte")).all() == []


def test_import_preview_then_confirm_applies_exactly_the_file(admin, db, twilio):
    wb = openpyxl.load_workbook(io.BytesIO(_export(admin, "xlsx")))
    ws = wb.active
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[0].value == "2A":
            row[header.index("Lignes")].value = "04 65 71 20 09"
            row[header.index("Messagerie vocale")].value = "oui"
    out = io.BytesIO()
    wb.save(out)
    preview = _upload(admin, out.getvalue(), "annuaire modifié.xlsx")
    page = preview.get_data(as_text=True)
    assert "1 département changera" in page and "2A Corse-du-Sud" in page
    assert operations.snapshot(db, "2A").lines[0].number == "+33465712001"  # nothing yet
    confirm = form_fields(page)
    done = admin.post("/admin/annuaire/import/confirmer", data=confirm)
    assert done.status_code == 302
    view = operations.snapshot(db, "2A")
    assert [l.number for l in view.lines] == ["+33465712009"] and view.voicemail_enabled
    entry = db.scalars(select(AuditEntry).where(AuditEntry.entity != "compte")).one()
    assert entry.actor == "import:annuaire modifié.xlsx (utilisateur:admin@example.gouv.fr)"
    assert set(entry.changes) == {"Lignes", "Messagerie vocale"}
    # The same confirmation cannot be replayed.
    assert admin.post("/admin/annuaire/import/confirmer", data=confirm).status_code == 302
    assert len(db.scalars(select(AuditEntry).where(AuditEntry.entity != "compte")).all()) == 1


def test_a_confirmation_is_refused_when_the_directory_moved_since_the_preview(admin, db):
    text = _export(admin).decode("utf-8-sig").replace(";successive;20;", ";simultanée;20;", 1)
    page = _upload(admin, text.encode("utf-8-sig"), "a.csv").get_data(as_text=True)
    confirm = form_fields(page)
    factories.departement(db, "93", ring_timeout=40)  # someone edits 93 meanwhile
    response = admin.post("/admin/annuaire/import/confirmer", data=confirm, follow_redirects=True)
    assert "L&#39;annuaire a changé depuis l&#39;aperçu" in response.get_data(as_text=True)
    assert operations.snapshot(db, "93").ring_strategy == "sequential"


def test_audit_log_page_filters(admin, db):
    runner = admin.application.test_cli_runner()
    assert runner.invoke(args=["directory", "worked-holiday", "Lundi de Pentecôte",
                               "--departement", "57"]).exit_code == 0
    fields = _edit_form(admin, "93")
    fields["ring_timeout"] = "25"
    admin.post("/annuaire/93/modifier", data=fields)
    page = admin.get("/admin/journal").get_data(as_text=True)
    assert "Lundi de Pentecôte : travaillé (département 57)" in page
    assert "Durée de sonnerie (s)" in page
    only = admin.get("/admin/journal?departement=57").get_data(as_text=True)
    assert "Lundi de Pentecôte" in only and "Durée de sonnerie" not in only


def test_preview_of_a_call_uses_the_same_engine(admin):
    page = admin.get("/apercu?departement=2A&day=2026-12-21&at=10:00&caller=nouveau&thematique=1"
                     "&referent=accept&voicemail=0").get_data(as_text=True)
    assert "Issue de l'appel : <strong>décroché</strong>" in page
    assert "+33 4 65 71 20 01" in page
    assert "Corse-du-Sud" in page
    closed = admin.get("/apercu?departement=93&day=2026-12-21&at=20:00&caller=nouveau&thematique="
                       "&referent=accept&voicemail=15").get_data(as_text=True)
    assert "hors horaires" in closed or "message vocal" in closed
    bad = admin.get("/apercu?departement=93&day=2026-13-45&at=25:00")
    assert bad.status_code == 200 and 'id="day-erreur"' in bad.get_data(as_text=True)


def test_past_periods_are_kept_but_not_shown(admin, db):
    factories.closure(db, "93", date(2025, 3, 3), reason="passée")
    factories.closure(db, "93", date(2027, 1, 4), reason="à venir")
    fields = _edit_form(admin, "93")
    assert fields.get("exceptions-0-reason") == "à venir" and "exceptions-1-reason" not in fields
    fields["ring_timeout"] = "30"
    assert admin.post("/annuaire/93/modifier", data=fields).status_code == 302
    reasons = sorted(e.reason for e in operations.snapshot(db, "93").exceptions)
    assert reasons == ["passée", "à venir"]


def test_national_worked_holidays_from_the_page(admin, db, clock):
    page = admin.get("/admin/jours-feries").get_data(as_text=True)
    assert "Lundi de Pentecôte" in page and "Saint-Étienne" in page
    fields = form_fields(page)
    fields.add("worked", "Lundi de Pentecôte")
    assert admin.post("/admin/jours-feries", data=fields).status_code == 302
    preview = admin.get("/apercu?departement=93&day=2027-05-17&at=10:00&caller=nouveau"
                        "&thematique=&referent=accept&voicemail=0").get_data(as_text=True)
    assert "Issue de l'appel : <strong>décroché</strong>" in preview
    entry = db.scalars(select(AuditEntry).where(AuditEntry.entity == "jour férié")).one()
    assert entry.summary == "Lundi de Pentecôte : travaillé (tous les départements)"
    assert entry.actor == "utilisateur:admin@example.gouv.fr"
    fields = form_fields(admin.get("/admin/jours-feries").get_data(as_text=True))
    assert fields.getlist("worked") == ["Lundi de Pentecôte"]
    del fields["worked"]
    admin.post("/admin/jours-feries", data=fields)
    assert operations.national_worked_holidays(db) == []
