"""Importing a workbook filled by hand: all or nothing, errors located, idempotent, hostile files refused."""

import zipfile
from datetime import datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import func, select

from tests import factories
from tracking import solicitations
from tracking.columns import HEADERS
from tracking.models import Channel, Solicitation, Source
from tracking.workbook_import import ImportRefused, import_file

PARIS = ZoneInfo("Europe/Paris")


def _book(path, rows, sheet="Historique des sollicitations", header=HEADERS):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


def _row(ref="", when=datetime(2026, 11, 3, 14, 20), code="93", channel="Courriel",
         them="Usage du SI", motif="Traitement des doublons", sous=None, comment="", resolved=None,
         escalated=None):
    return (ref, when, code, channel, them, motif, sous, None, None, None, resolved, escalated,
            comment, None, "oui")


def _count(db):
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Solicitation))


def test_rows_added_by_hand_and_qualifications_are_imported_once(db, tmp_path):
    existing = solicitations.add(db, actor=factories.ACTOR, departement="93", occurred_at=datetime(2026, 11, 2, 9, tzinfo=PARIS),
                                 channel=Channel.phone_direct)
    db.commit()
    path = _book(tmp_path / "93.xlsx", [
        _row(ref=existing.reference, when="02/11/2026 09:00", channel="Téléphone (hors SVI)", them="Habilitations et comptes",
             motif="Création de compte", comment="compte créé", resolved="oui"),
        _row(comment="courriel du guichet"),
        _row(comment="courriel du guichet"),  # the same email twice in the file: two rows
        _row(when="04/11/2026 09:15", channel="Formulaire", them="À qualifier", motif="À qualifier"),
    ])
    assert import_file(db, path, actor=factories.ACTOR) == "Import terminé : 3 ligne(s) ajoutée(s), 1 mise(s) à jour, 0 inchangée(s)."
    db.commit()
    db.refresh(existing)
    assert (existing.motif.key, existing.comment, existing.resolved_first_level) == ("creation", "compte créé", True)
    added = db.scalars(select(Solicitation).where(Solicitation.source == Source.workbook)
                       .order_by(Solicitation.id)).all()
    assert [(r.channel, r.occurred_at, r.thematique_id is None) for r in added] == [
        (Channel.email, datetime(2026, 11, 3, 13, 20, tzinfo=ZoneInfo("UTC")), False),
        (Channel.email, datetime(2026, 11, 3, 13, 20, tzinfo=ZoneInfo("UTC")), False),
        (Channel.form, datetime(2026, 11, 4, 8, 15, tzinfo=ZoneInfo("UTC")), True)]
    before = _count(db)
    assert import_file(db, path, actor=factories.ACTOR) == "Import terminé : 0 ligne(s) ajoutée(s), 0 mise(s) à jour, 4 inchangée(s)."
    db.commit()
    assert _count(db) == before


def test_every_bad_cell_is_named_and_nothing_is_imported(db, tmp_path):
    before = _count(db)
    path = _book(tmp_path / "bad.xlsx", [
        _row(comment="valide"),
        _row(ref="S-INCONNUE00"),
        _row(code="99", channel="Pigeon"),
        _row(them="Usage du SI", motif="Création de compte"),
        _row(when="32/13/2026", channel="Téléphone (SVI)", resolved="peut-être"),
        _row(when=datetime(2026, 3, 29, 2, 30)),  # never happened in Paris (summer time)
        _row(when="25/10/2026 02:30"),  # happened twice there (winter time)
    ])
    with pytest.raises(ImportRefused) as refused:
        import_file(db, path, actor=factories.ACTOR)
    lines = refused.value.lines()
    assert lines[0] == "Import refusé, rien n'a été modifié : 9 erreur(s)"
    sheet = "feuille « Historique des sollicitations »"
    expected = [
        f"{sheet}, ligne 3, colonne « Référence » : référence inconnue : « S-INCONNUE00 »",
        f"{sheet}, ligne 4, colonne « Département » : département inconnu : « 99 »",
        f"{sheet}, ligne 4, colonne « Canal » : « Pigeon » n'est pas dans la liste",
        f"{sheet}, ligne 5, colonne « Motif » : « Création de compte » n'est pas un motif de « Usage du SI »",
        f"{sheet}, ligne 6, colonne « Résolu au niveau 1 » : « peut-être » : attendu « oui » ou « non »",
        f"{sheet}, ligne 6, colonne « Canal » : les appels du SVI sont créés par le service",
        f"{sheet}, ligne 6, colonne « Date et heure » : date illisible : « 32/13/2026 »",
        f"{sheet}, ligne 7, colonne « Date et heure » : cette heure n'existe pas dans le fuseau",
        f"{sheet}, ligne 8, colonne « Date et heure » : cette heure existe deux fois dans le fuseau",
    ]
    for prefix in expected:
        assert any(line.startswith(prefix) for line in lines), (prefix, lines)
    db.rollback()
    assert _count(db) == before


@pytest.mark.parametrize("content, message", [
    (b"Date;Canal\n01/01/2026;Courriel\n", "n'est pas un classeur Excel"),
    (b"", "le fichier est vide"),
])
def test_files_that_are_not_workbooks_are_refused(db, tmp_path, content, message):
    path = tmp_path / "faux.xlsx"
    path.write_bytes(content)
    with pytest.raises(ImportRefused, match=message):
        import_file(db, path, actor=factories.ACTOR)


def test_hostile_and_malformed_workbooks_are_refused(db, tmp_path):
    bomb = tmp_path / "entities.xlsx"
    _book(bomb, [_row()])
    with zipfile.ZipFile(bomb) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    assert parts[sheet].startswith(b"<worksheet")
    parts[sheet] = (b"<!DOCTYPE worksheet [<!ENTITY a \"aaaaaaaaaa\">"
                    b"<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]>" + parts[sheet])
    with zipfile.ZipFile(bomb, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    with pytest.raises(ImportRefused, match="n'est pas un classeur Excel"):
        import_file(db, bomb, actor=factories.ACTOR)
    with pytest.raises(ImportRefused, match="colonnes manquantes : Canal"):
        import_file(db, _book(tmp_path / "h.xlsx", [], header=[h for h in HEADERS if h != "Canal"]), actor=factories.ACTOR)
    with pytest.raises(ImportRefused, match="aucune feuille"):
        import_file(db, _book(tmp_path / "s.xlsx", [_row()], sheet="Feuil1"), actor=factories.ACTOR)
    with pytest.raises(ImportRefused, match=r"seuls les classeurs \.xlsx"):
        import_file(db, tmp_path / "x.csv", actor=factories.ACTOR)


def test_import_command(app, db, tmp_path):
    path = _book(tmp_path / "93.xlsx", [_row(comment="par la commande")])
    runner = app.test_cli_runner()
    result = runner.invoke(args=["import-workbook", str(path)])
    assert result.exit_code == 0 and "1 ligne(s) ajoutée(s)" in result.output, result.output
    bad = _book(tmp_path / "bad.xlsx", [_row(code="99")])
    result = runner.invoke(args=["import-workbook", str(bad)])
    assert result.exit_code == 1 and "département inconnu : « 99 »" in result.output


def test_an_existing_rows_date_channel_or_departement_cannot_be_changed(db, tmp_path):
    existing = solicitations.add(db, actor=factories.ACTOR, departement="93", occurred_at=datetime(2026, 11, 2, 9, tzinfo=PARIS),
                                 channel=Channel.phone_direct)
    db.commit()
    path = _book(tmp_path / "93.xlsx", [
        _row(ref=existing.reference, when="02/11/1850 09:00", channel="Courriel", code="75",
             them="Habilitations et comptes", motif="Création de compte")])
    with pytest.raises(ImportRefused) as refused:
        import_file(db, path, actor=factories.ACTOR)
    assert {e.column for e in refused.value.errors} == {"Département", "Canal", "Date et heure"}
    path = _book(tmp_path / "93b.xlsx", [
        _row(ref=existing.reference, when="03/11/2026 09:00", channel="Téléphone (hors SVI)",
             them="Habilitations et comptes", motif="Création de compte")])
    with pytest.raises(ImportRefused) as refused:
        import_file(db, path, actor=factories.ACTOR)
    assert [(e.column, "02/11/2026 09:00" in e.message) for e in refused.value.errors] == [
        ("Date et heure", True)]
    db.refresh(existing)
    assert existing.motif is None
