"""`flask directory export/import`: CSV and XLSX files, all-or-nothing import, hostile files."""

import csv
import zipfile
from datetime import date, datetime, time

import openpyxl
import pytest

from directory.io import export_rows
from directory.models import Departement
from directory.operations import set_worked_holiday, snapshot
from directory.schedule import Exception_, Slot

HEADER = ["Code", "Département", "Assistance téléphonique", "Lignes", "Sonnerie",
          "Durée de sonnerie (s)", "Messagerie vocale", "Formulaire", "Courriel", "Horaires",
          "Fermetures exceptionnelles", "Ouvertures exceptionnelles", "Jours fériés travaillés"]
DEFAULT_HOURS = "lundi-vendredi 09:30-11:30 14:00-16:30"


def run(app, *args):
    return app.test_cli_runner().invoke(args=["directory", *map(str, args)])


def sheet_rows(path) -> list[list]:
    ws = openpyxl.load_workbook(path).active
    return [[c.value for c in row] for row in ws.iter_rows()]


def csv_rows(path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f, delimiter=";"))


def write_csv(path, rows, delimiter=";"):
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)


def by_code(rows) -> dict[str, list]:
    return {row[0]: row for row in rows[1:]}


def cell(rows, code, column):
    return by_code(rows)[code][HEADER.index(column)]


def set_cell(rows, code, column, value):
    by_code(rows)[code][HEADER.index(column)] = value


def fresh(db):
    """End the test's read transaction so that it sees what the command committed."""
    db.rollback()
    return db


def test_export_xlsx_has_a_formatted_header_and_every_departement(app, tmp_path):
    path = tmp_path / "annuaire.xlsx"
    result = run(app, "export", path)

    assert result.exit_code == 0, result.output
    assert "101 départements exportés" in result.output
    wb = openpyxl.load_workbook(path)
    ws = wb.active
    assert [c.value for c in ws[1]] == HEADER
    assert all(c.font.bold for c in ws[1])
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:M102"
    assert ws.column_dimensions["D"].width > len("Lignes") + 2
    rows = sheet_rows(path)
    assert len(rows) == 102
    assert [r[0] for r in rows[1:4]] == ["01", "02", "03"]
    assert [r[0] for r in rows[19:23]] == ["19", "2A", "2B", "21"]
    assert [r[0] for r in rows[-5:]] == ["971", "972", "973", "974", "976"]
    assert ws["A2"].data_type == "s"
    assert cell(rows, "93", "Département") == "Seine-Saint-Denis"
    assert cell(rows, "93", "Lignes") == "+33199009301 ; +33261919302"
    assert cell(rows, "93", "Sonnerie") == "successive"
    assert cell(rows, "75", "Sonnerie") == "simultanée"
    assert cell(rows, "93", "Messagerie vocale") == "oui"
    assert cell(rows, "93", "Horaires") == DEFAULT_HOURS
    assert cell(rows, "93", "Durée de sonnerie (s)") == "20"
    assert cell(rows, "974", "Assistance téléphonique") == "non"
    assert cell(rows, "974", "Formulaire") == "assistance.example.gouv.fr/974"
    assert cell(rows, "974", "Lignes") is None


def test_export_csv_is_french_excel_csv_with_inert_cells(app, tmp_path):
    path = tmp_path / "annuaire.csv"
    result = run(app, "export", path)

    assert result.exit_code == 0, result.output
    assert path.read_bytes().startswith(b"\xef\xbb\xbfCode;D\xc3\xa9partement;")
    rows = csv_rows(path)
    assert rows[0] == HEADER
    assert len(rows) == 102
    # A leading "+" would be run as a formula by a spreadsheet: the quote keeps it text.
    assert cell(rows, "75", "Lignes") == "'+33199007501 ; +33199007502"
    assert cell(rows, "01", "Horaires") == DEFAULT_HOURS


def test_export_refuses_an_unknown_extension(app, tmp_path):
    result = run(app, "export", tmp_path / "annuaire.ods")

    assert result.exit_code == 1
    assert "extension non prise en charge : « .ods »" in result.output
    assert not (tmp_path / "annuaire.ods").exists()


def test_round_trip_applies_the_edited_cells_and_reexports_them(app, db, tmp_path):
    path = tmp_path / "annuaire.xlsx"
    assert run(app, "export", path).exit_code == 0
    wb = openpyxl.load_workbook(path)
    ws = wb.active
    rows = sheet_rows(path)
    edits = {
        ("971", "Lignes"): "0590 12 34 56 ; 0690 12 34 56",
        ("93", "Horaires"): "lundi 08:00-12:00 ; mardi-jeudi 09:00-12:00 13:00-17:00 ; "
                            "samedi 09:00-12:00",
        ("93", "Fermetures exceptionnelles"): "2026-12-24..2026-12-31 Congés de fin d'année ; "
                                              "2027-01-02 Inventaire",
        ("93", "Ouvertures exceptionnelles"): "2026-12-27 09:00-12:00 Permanence",
        ("57", "Jours fériés travaillés"): "Vendredi saint ; Lundi de Pentecôte",
        ("75", "Sonnerie"): "successive",
        ("75", "Durée de sonnerie (s)"): "30",
    }
    for (code, column), value in edits.items():
        row_number = [r[0] for r in rows].index(code) + 1
        ws.cell(row_number, HEADER.index(column) + 1, value)
        set_cell(rows, code, column, value)
    wb.save(path)

    result = run(app, "import", path)

    assert result.exit_code == 0, result.output
    assert "4 département(s) mis à jour, 97 inchangé(s)" in result.output
    db = fresh(db)
    guadeloupe = snapshot(db, "971")
    assert [l.number for l in guadeloupe.lines] == ["+590590123456", "+590690123456"]
    seine_saint_denis = snapshot(db, "93")
    assert seine_saint_denis.slots == (
        Slot(0, time(8), time(12)),
        *(Slot(day, start, end) for day in (1, 2, 3)
          for start, end in ((time(9), time(12)), (time(13), time(17)))),
        Slot(5, time(9), time(12)))
    assert seine_saint_denis.exceptions == (
        Exception_("closure", date(2026, 12, 24), date(2026, 12, 31), "Congés de fin d'année"),
        Exception_("opening", date(2026, 12, 27), date(2026, 12, 27), "Permanence",
                   time(9), time(12)),
        Exception_("closure", date(2027, 1, 2), date(2027, 1, 2), "Inventaire"))
    assert snapshot(db, "57").worked_holidays == {"Vendredi saint", "Lundi de Pentecôte"}
    assert snapshot(db, "67").worked_holidays == frozenset()
    paris = snapshot(db, "75")
    assert (paris.ring_strategy, paris.ring_timeout) == ("sequential", 30)
    # Untouched cells stay as they were, including the demo lines' labels.
    assert [(l.number, l.label) for l in paris.lines] == [
        ("+33199007501", "Ligne de démonstration (fictive)"),
        ("+33199007502", "Ligne de démonstration (fictive)")]

    again = tmp_path / "again.xlsx"
    assert run(app, "export", again).exit_code == 0
    set_cell(rows, "971", "Lignes", "+590590123456 ; +590690123456")
    set_cell(rows, "57", "Jours fériés travaillés", "Lundi de Pentecôte ; Vendredi saint")
    assert sheet_rows(again) == rows

    result = run(app, "import", again)
    assert result.exit_code == 0, result.output
    assert "0 département(s) mis à jour, 101 inchangé(s)" in result.output


def test_import_csv_accepts_comma_numeric_code_and_loose_values(app, db, tmp_path):
    rows = csv_rows_of_export(app, tmp_path)
    ain = by_code(rows)["01"]
    ain[0] = "1"  # what Excel makes of "01"
    ain[HEADER.index("Assistance téléphonique")] = "NON"
    ain[HEADER.index("Messagerie vocale")] = "Vrai"
    ain[HEADER.index("Sonnerie")] = "Successive"
    ain[HEADER.index("Lignes")] = "04 74 00 00 01"
    ain[HEADER.index("Jours fériés travaillés")] = "lundi de pentecote"
    path = tmp_path / "ain.csv"
    write_csv(path, [rows[0], ain], delimiter=",")

    result = run(app, "import", path)

    assert result.exit_code == 0, result.output
    assert "1 département(s) mis à jour, 0 inchangé(s)" in result.output
    ain_view = snapshot(fresh(db), "01")
    assert (ain_view.phone_assistance, ain_view.voicemail_enabled) == (False, True)
    assert ain_view.ring_strategy == "sequential"
    assert [l.number for l in ain_view.lines] == ["+33474000001"]
    assert ain_view.worked_holidays == {"Lundi de Pentecôte"}
    # Départements absent from the file are untouched.
    assert [l.number for l in snapshot(db, "93").lines] == ["+33199009301", "+33261919302"]


def test_import_xlsx_takes_cells_as_excel_retyped_them(app, db, tmp_path):
    def row(**cells):
        return [cells.get(h, "") for h in HEADER]

    ain = row(Code=1, **{"Assistance téléphonique": True, "Lignes": "04 74 00 00 01",
                         "Sonnerie": "simultanée", "Durée de sonnerie (s)": 25,
                         "Messagerie vocale": 0, "Horaires": DEFAULT_HOURS,
                         "Fermetures exceptionnelles": datetime(2026, 12, 24)})
    seine_saint_denis = row(Code="93", **{"Assistance téléphonique": "oui", "Lignes": "01 23",
                                          "Sonnerie": "successive", "Durée de sonnerie (s)": 20,
                                          "Messagerie vocale": "oui"})
    path = tmp_path / "annuaire.xlsx"

    def save(*rows):
        wb = openpyxl.Workbook()
        for values in rows:
            wb.active.append(values)
        wb.save(path)

    save(HEADER, ain, [], seine_saint_denis)  # an empty row 3 keeps row numbers as shown
    result = run(app, "import", path)

    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == [
        "ligne 4, colonne « Lignes » : numéro de téléphone invalide pour la région FR : « 01 23 »"]

    seine_saint_denis[HEADER.index("Lignes")] = "01 99 00 93 01"
    save(HEADER, ain, [], seine_saint_denis)
    result = run(app, "import", path)

    assert result.exit_code == 0, result.output
    assert "2 département(s) mis à jour, 0 inchangé(s)" in result.output
    ain_view = snapshot(fresh(db), "01")
    assert (ain_view.phone_assistance, ain_view.ring_timeout, ain_view.voicemail_enabled) == (
        True, 25, False)
    assert ain_view.exceptions == (
        Exception_("closure", date(2026, 12, 24), date(2026, 12, 24), ""),)
    assert [l.number for l in snapshot(db, "93").lines] == ["+33199009301"]
    assert snapshot(db, "93").slots == ()


def csv_rows_of_export(app, tmp_path) -> list[list[str]]:
    path = tmp_path / "export.csv"
    assert run(app, "export", path).exit_code == 0
    return csv_rows(path)


def test_import_with_bad_rows_changes_nothing_and_names_every_cell(app, db, tmp_path):
    before = export_rows(db)
    rows = csv_rows_of_export(app, tmp_path)
    line_of = {row[0]: n for n, row in enumerate(rows, start=1)}
    set_cell(rows, "05", "Sonnerie", "successive")  # valid, but must not be applied either
    set_cell(rows, "93", "Lignes", "01 99 00 93 01 ; 01 23")
    set_cell(rows, "75", "Horaires", "lundy 09:00-12:00 ; mardi 14:00-12:00")
    set_cell(rows, "04", "Messagerie vocale", "peut-être")
    set_cell(rows, "971", "Fermetures exceptionnelles", "24/12/2026 Noël")
    set_cell(rows, "974", "Ouvertures exceptionnelles", "2026-12-27 Permanence")
    set_cell(rows, "57", "Jours fériés travaillés", "Fête des mères")
    set_cell(rows, "01", "Code", "999")
    set_cell(rows, "02", "Code", "03")
    path = tmp_path / "bad.csv"
    write_csv(path, rows)

    result = run(app, "import", path)

    assert result.exit_code == 1
    expected = [
        f"ligne {line_of['01']}, colonne « Code » : département inconnu : « 999 »",
        f"ligne {line_of['03']}, colonne « Code » : département 03 en double "
        f"(déjà en ligne {line_of['02']})",
        f"ligne {line_of['04']}, colonne « Messagerie vocale » : « oui » ou « non » attendu : "
        "« peut-être »",
        f"ligne {line_of['57']}, colonne « Jours fériés travaillés » : jour férié inconnu pour "
        "ce département : « Fête des mères »",
        f"ligne {line_of['75']}, colonne « Horaires » : jour inconnu : « lundy » (attendu : "
        "lundi, mardi, mercredi, jeudi, vendredi, samedi, dimanche) ; l'heure de fin doit "
        "suivre l'heure de début : « 14:00-12:00 »",
        f"ligne {line_of['93']}, colonne « Lignes » : numéro de téléphone invalide pour la "
        "région FR : « 01 23 »",
        f"ligne {line_of['971']}, colonne « Fermetures exceptionnelles » : date invalide, "
        "format AAAA-MM-JJ attendu : « 24/12/2026 »",
        f"ligne {line_of['974']}, colonne « Ouvertures exceptionnelles » : horaire invalide, "
        "format HH:MM-HH:MM attendu : « Permanence »",
    ]
    assert result.stderr.splitlines() == [
        "Import refusé, rien n'a été modifié : 8 erreur(s)", *expected]
    assert export_rows(fresh(db)) == before


@pytest.mark.parametrize("name, content, message", [
    ("annuaire.xlsx", b"Code;D\xc3\xa9partement\n01;Ain\n", "n'est pas un classeur Excel"),
    ("annuaire.xlsx", "zip", "n'est pas un classeur Excel"),
    ("annuaire.xlsx", "entities", "n'est pas un classeur Excel"),
    ("annuaire.xlsx", b"", "le fichier est vide"),
    ("annuaire.csv", b"", "le fichier est vide"),
    ("annuaire.csv", b"\n;;\n", "le fichier est vide"),
    ("annuaire.csv", b"Code;D\x81partement;Lignes", "enregistrez-le au format « CSV UTF-8 »"),
    ("annuaire.csv", "big", "fichier trop volumineux (10 Mo au maximum)"),
    ("annuaire.ods", b"whatever", "extension non prise en charge : « .ods »"),
])
def test_import_refuses_unreadable_files(app, tmp_path, name, content, message):
    path = tmp_path / name
    if content == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("lisez-moi.txt", "pas un classeur")
    elif content == "entities":
        # A "billion laughs" sheet: defusedxml, used by openpyxl, must refuse entities.
        assert openpyxl.DEFUSEDXML
        openpyxl.Workbook().save(path)
        with zipfile.ZipFile(path) as archive:
            parts = {n: archive.read(n) for n in archive.namelist()}
        parts["xl/worksheets/sheet1.xml"] = (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "rire"><!ENTITY b "&a;&a;&a;&a;">]>'
            b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&b;</t></is></c></row>'
            b'</sheetData></worksheet>')
        with zipfile.ZipFile(path, "w") as archive:
            for part, data in parts.items():
                archive.writestr(part, data)
    elif content == "big":
        with open(path, "wb") as f:
            f.truncate(10 * 1024 * 1024 + 1)
    else:
        path.write_bytes(content)

    result = run(app, "import", path)

    assert result.exit_code == 1
    assert result.stderr.startswith("Import refusé : ")
    assert message in result.stderr


def test_import_refuses_a_wrong_header_row(app, tmp_path):
    header = [h for h in HEADER if h != "Lignes"] + ["Téléphone"]
    path = tmp_path / "annuaire.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(header)
    wb.active.append(["93"] + [""] * (len(header) - 1))
    wb.save(path)

    result = run(app, "import", path)

    assert result.exit_code == 1
    assert ("première ligne incorrecte (colonnes manquantes : « Lignes » ; "
            "colonnes inconnues : « Téléphone »)") in result.stderr


def test_formula_looking_values_are_exported_as_inert_text(app, db, tmp_path):
    formula = '=HYPERLINK("http://pirate.example","Cliquez ici")'
    db.get(Departement, "974").form_url = formula
    db.commit()
    xlsx, csv_path = tmp_path / "annuaire.xlsx", tmp_path / "annuaire.csv"
    assert run(app, "export", xlsx).exit_code == 0
    assert run(app, "export", csv_path).exit_code == 0

    ws = openpyxl.load_workbook(xlsx).active
    form = ws.cell([c.value for c in ws["A"]].index("974") + 1, HEADER.index("Formulaire") + 1)
    assert (form.value, form.data_type, form.quotePrefix) == (formula, "s", True)
    with zipfile.ZipFile(xlsx) as archive:
        assert b"<f>" not in archive.read("xl/worksheets/sheet1.xml")
    assert cell(csv_rows(csv_path), "974", "Formulaire") == "'" + formula
    # Both files read back to the same value: importing them changes nothing.
    for path in (xlsx, csv_path):
        result = run(app, "import", path)
        assert result.exit_code == 0, result.output
        assert "0 département(s) mis à jour, 101 inchangé(s)" in result.output
    assert snapshot(fresh(db), "974").form_url == formula


def test_import_keeps_the_days_a_departement_keeps_off(app, db, tmp_path):
    set_worked_holiday(db, "Lundi de Pentecôte")  # worked nationally…
    set_worked_holiday(db, "Lundi de Pentecôte", "57", worked=False)  # …but not in 57
    db.commit()
    rows = csv_rows_of_export(app, tmp_path)
    assert cell(rows, "57", "Jours fériés travaillés") == ""  # neither is a département's own
    set_cell(rows, "57", "Jours fériés travaillés", "vendredi saint")
    write_csv(tmp_path / "edited.csv", rows)

    assert run(app, "import", tmp_path / "edited.csv").exit_code == 0
    assert snapshot(fresh(db), "57").worked_holidays == {"Vendredi saint"}
    assert snapshot(db, "75").worked_holidays == {"Lundi de Pentecôte"}


def test_import_joins_line_breaks_and_reads_windows_1252(app, db, tmp_path):
    """French Excel saves "CSV (séparateur : point-virgule)" in Windows-1252; Alt+Enter breaks lines."""
    rows = csv_rows_of_export(app, tmp_path)
    set_cell(rows, "93", "Fermetures exceptionnelles", "2026-12-24 Congés\nde fin d'année")
    path = tmp_path / "excel.csv"
    with open(path, "w", encoding="cp1252", newline="") as f:
        csv.writer(f, delimiter=";").writerows(rows)

    result = run(app, "import", path)

    assert result.exit_code == 0, result.output
    assert snapshot(fresh(db), "93").exceptions == (
        Exception_("closure", date(2026, 12, 24), date(2026, 12, 24), "Congés de fin d'année"),)


@pytest.mark.parametrize("char", ["\x01", "\x7f", "\x9f", "\ufdd0", "\ufffe", "\uffff"])
def test_import_refuses_characters_xml_cannot_hold_and_values_beyond_the_header(app, db, tmp_path,
                                                                                 char):
    before = export_rows(db)
    rows = csv_rows_of_export(app, tmp_path)
    line_of = {row[0]: n for n, row in enumerate(rows, start=1)}
    set_cell(rows, "974", "Formulaire", f"assistance.example.gouv.fr/{char}974")  # invalid in TwiML
    set_cell(rows, "93", "Fermetures exceptionnelles", f"2026-12-24 Cong{char}és")
    write_csv(tmp_path / "control.csv", rows)

    result = run(app, "import", tmp_path / "control.csv")

    assert result.exit_code == 1
    code = f"U+{ord(char):04X}"
    assert (f"ligne {line_of['974']}, colonne « Formulaire » : caractère invisible ou interdit "
            f"dans la cellule ({code})") in result.stderr
    assert (f"ligne {line_of['93']}, colonne « Fermetures exceptionnelles » : caractère invisible "
            f"ou interdit dans la cellule ({code})") in result.stderr
    assert export_rows(fresh(db)) == before

    # The same in a workbook (XML 1.0 holds these; the others make a file no reader accepts).
    if char in "\x7f\x9f\ufdd0":
        set_cell(rows, "93", "Fermetures exceptionnelles", "")
        workbook = openpyxl.Workbook()
        for row in rows:
            workbook.active.append(row)
        workbook.save(tmp_path / "control.xlsx")
        result = run(app, "import", tmp_path / "control.xlsx")
        assert result.exit_code == 1
        assert (f"colonne « Formulaire » : caractère invisible ou interdit dans la cellule "
                f"({code})") in result.stderr
    set_cell(rows, "974", "Formulaire", "assistance.example.gouv.fr/974")

    by_code(rows)["01"].append("assistance-01@example.gouv.fr")  # one cell too many
    write_csv(tmp_path / "stray.csv", rows)

    result = run(app, "import", tmp_path / "stray.csv")

    assert result.exit_code == 1
    assert (f"ligne {line_of['01']}, colonne {len(HEADER) + 1} : "
            "« assistance-01@example.gouv.fr »") in result.stderr
    assert export_rows(fresh(db)) == before


def test_import_of_a_tiny_xlsx_declaring_a_far_cell_is_refused_at_once(app, db, tmp_path):
    """A 5 KB workbook with a value in XFD1048576: read cell by cell, it would take minutes."""
    wb = openpyxl.Workbook()
    wb.active.append(HEADER)
    wb.active.append(["75", "", "oui", "01 99 00 75 09", "simultanée", 20, "non", "", "",
                      DEFAULT_HOURS, "", "", ""])
    wb.active.cell(row=1_048_576, column=16_384, value="x")
    wb.save(tmp_path / "far.xlsx")

    before = export_rows(db)

    result = run(app, "import", tmp_path / "far.xlsx")

    assert result.exit_code == 1
    assert "trop de lignes (10000 au maximum, toutes feuilles et lignes vides comprises)" in result.stderr
    assert export_rows(fresh(db)) == before
