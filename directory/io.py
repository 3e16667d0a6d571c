"""Bulk import and export of the directory as CSV or XLSX: one row per département.

Import is all or nothing: every row is validated first, then every change is saved by
`directory.settings.save`. Only files live here (read, header, write, row → settings); each cell
is parsed and formatted by `directory/rules.py`, as in every other place a setting is typed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import openpyxl
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

from core import text as text_policy
from core.spreadsheets import (FORMULA_PREFIXES, NOT_WORKBOOK, ReadBudget, UnreadableFile,
                               check_size, keep_as_text, open_untrusted_workbook, sheet_rows)
from directory import rules, settings
from directory.models import Departement
from directory.reference import official_order
from directory.rules import DirectoryError
from directory.settings import COLUMNS, DepartementSettings

#: Files are refused above this size; an XLSX also above this size once unzipped (zip bomb).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_UNZIPPED_BYTES = 20 * 1024 * 1024
#: There are 101 départements: anything much longer is not a directory file.
MAX_ROWS = 1000


@dataclass(frozen=True)
class Row:
    """One data row of an imported file: its number as a spreadsheet shows it, and its cells."""

    number: int
    cells: dict[str, str]


@dataclass(frozen=True)
class RowError:
    """A refused cell, told to the admin by row number and column header."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"ligne {self.row}, colonne « {self.column} » : {self.message}"


# --- export -------------------------------------------------------------------------------

def export_rows(db: Session) -> list[dict[str, str]]:
    """Every département as a row of text cells keyed by COLUMNS, in the official order."""
    depts = official_order(settings.load_all(db), lambda d: d.code)
    worked = settings.worked_by_departement(db)
    return [{column: text_policy.clean(value) for column, value in
             settings.cells(settings.of(d, worked.get(d.code, ())), d.name).items()}
            for d in depts]


def write_file(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows as CSV or XLSX, chosen by the file's extension."""
    writer = {".csv": write_csv, ".xlsx": write_xlsx}.get(Path(path).suffix.lower())
    if writer is None:
        raise DirectoryError(_bad_extension(path))
    writer(path, rows)


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows as CSV the way French Excel reads it: UTF-8 with BOM, `;` delimiter."""
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(COLUMNS)
        for row in rows:
            # A quote makes a spreadsheet keep the cell as text; read_file removes it.
            writer.writerow(["'" + v if v.startswith(FORMULA_PREFIXES) else v
                             for v in (text_policy.clean(row[c]) for c in COLUMNS)])


def write_xlsx(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows as an XLSX sheet: bold frozen header, filter, every cell stored as text."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Annuaire"
    ws.append(COLUMNS)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r, row in enumerate(rows, start=2):
        for c, column in enumerate(COLUMNS, start=1):
            value = text_policy.clean(row[column])
            cell = ws.cell(r, c, value)
            cell.number_format = "@"
            if value.startswith(FORMULA_PREFIXES):
                keep_as_text(cell)
    for c, column in enumerate(COLUMNS, start=1):
        longest = max([len(column)] + [len(row[column]) for row in rows])
        ws.column_dimensions[get_column_letter(c)].width = min(longest, 60) + 2
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions
    wb.save(path)


# --- reading ------------------------------------------------------------------------------

def read_file(path: Path) -> list[Row]:
    """Read a CSV or XLSX directory file and check its header; raises DirectoryError in French."""
    path = Path(path)
    reader = {".csv": _read_csv, ".xlsx": _read_xlsx}.get(path.suffix.lower())
    if reader is None:
        raise DirectoryError(_bad_extension(path))
    try:
        check_size(path, MAX_FILE_BYTES)
    except UnreadableFile as exc:
        raise DirectoryError(str(exc)) from None
    table = []
    for n, values in reader(path):
        cells = [_text(v) for v in values]
        if any(cells):
            if len(table) > MAX_ROWS:
                raise DirectoryError(f"trop de lignes ({MAX_ROWS} départements au maximum)")
            table.append((n, cells))
    if not table:
        raise DirectoryError("le fichier est vide")
    header = _check_header(table[0][1])
    beyond = [f"ligne {n}, colonne {len(header) + i + 1} : « {value} »"
              for n, values in table[1:] for i, value in enumerate(values[len(header):]) if value]
    if beyond:
        raise DirectoryError("valeurs hors des colonnes du tableau (sans titre) : "
                             + " ; ".join(beyond[:20]) + (" ; …" if len(beyond) > 20 else ""))
    return [Row(n, dict(zip(header, values))) for n, values in table[1:]]


def _read_csv(path: Path):
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # "CSV (séparateur : point-virgule)" of French Excel is Windows-1252, not UTF-8.
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise DirectoryError("fichier CSV illisible : enregistrez-le au format "
                                 "« CSV UTF-8 »") from None
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") >= first_line.count(",") else ","
    try:
        yield from enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter),
                             start=1)
    except csv.Error as exc:
        raise DirectoryError(f"fichier CSV illisible : {exc}") from None


def _read_xlsx(path: Path):
    try:
        wb = open_untrusted_workbook(path, max_unzipped_bytes=MAX_UNZIPPED_BYTES)
    except UnreadableFile as exc:
        raise DirectoryError(str(exc)) from None
    try:
        # Wide enough to see values beyond the header; MAX_ROWS rows plus many blank ones.
        yield from sheet_rows(wb.worksheets[0], max_col=len(COLUMNS) + 50,
                              budget=ReadBudget(10 * MAX_ROWS))
    except UnreadableFile as exc:
        raise DirectoryError(str(exc)) from None
    except Exception as exc:
        raise DirectoryError(NOT_WORKBOOK) from exc
    finally:
        wb.close()


def _text(value) -> str:
    """A cell as the admin sees it: Excel may have turned "01" into 1 or a date into a datetime."""
    if value is None:
        return ""
    if isinstance(value, bool):  # French Excel turns a typed "vrai" into TRUE
        return "vrai" if value else "faux"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime) and value.time() == time(0):
        value = value.date()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    text = value.isoformat() if isinstance(value, (date, datetime)) else str(value)
    text = " ".join(text.split())  # line breaks typed in a cell (Alt+Enter) are spaces
    if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES):
        text = text[1:]
    return text


def _check_header(header: list[str]) -> list[str]:
    while header and not header[-1]:
        header.pop()
    missing = [c for c in COLUMNS if c not in header]
    unknown = [h or "(sans titre)" for h in header if h not in COLUMNS]
    doubled = sorted({h for h in header if h and header.count(h) > 1})
    problems = []
    if missing:
        problems.append("colonnes manquantes : " + rules.quoted(missing))
    if unknown:
        problems.append("colonnes inconnues : " + rules.quoted(unknown))
    if doubled:
        problems.append("colonnes en double : " + rules.quoted(doubled))
    if problems:
        raise DirectoryError("première ligne incorrecte (" + " ; ".join(problems)
                             + "). Colonnes attendues : " + ", ".join(COLUMNS))
    return header


# --- import -------------------------------------------------------------------------------

def validate(db: Session, rows: list[Row]) -> tuple[list[DepartementSettings], list[RowError]]:
    """Check every row; return the settings that differ from the database, and every error.
    Save them with `directory.settings.save`."""
    depts = {d.code: d for d in settings.load_all(db)}
    worked = settings.worked_by_departement(db)
    seen: dict[str, int] = {}
    changes, errors = [], []
    for row in rows:
        wanted = _parse_row(row, depts, seen, errors)
        if wanted is not None:
            dept = depts[wanted.code]
            if wanted != settings.of(dept, worked.get(dept.code, ())):
                changes.append(wanted)
    return changes, errors


def _parse_row(row: Row, depts: dict[str, Departement], seen: dict[str, int],
               errors: list[RowError]) -> DepartementSettings | None:
    """Parse one row, appending its errors; None when any cell is refused."""
    count = len(errors)

    def cell(column, parse, *args):
        try:
            text = row.cells.get(column, "")
            char = text_policy.forbidden(text)
            if char is not None:  # would make the TwiML of this département's calls invalid
                raise DirectoryError("caractère invisible ou interdit dans la cellule "
                                     f"({text_policy.describe(char)})")
            return parse(text, *args)
        except DirectoryError as exc:
            errors.append(RowError(row.number, column, str(exc)))
            return None

    code = cell("Code", _code, depts, seen, row.number)
    # Numbers and holidays depend on the département: unchecked while its code is wrong.
    dept = depts.get(code)
    values = dict(
        phone_assistance=cell("Assistance téléphonique", rules.parse_yes_no),
        lines=dept and cell("Lignes", rules.parse_lines, dept.phone_region),
        ring_strategy=cell("Sonnerie", rules.parse_ring_strategy),
        ring_timeout=cell("Durée de sonnerie (s)", rules.parse_ring_timeout),
        voicemail_enabled=cell("Messagerie vocale", rules.parse_yes_no),
        form_url=cell("Formulaire", rules.parse_free_text),
        email=cell("Courriel", rules.parse_email),
        slots=cell("Horaires", rules.parse_slots),
        closures=cell("Fermetures exceptionnelles", rules.parse_periods, False),
        openings=cell("Ouvertures exceptionnelles", rules.parse_periods, True),
        worked_holidays=dept and cell("Jours fériés travaillés", rules.parse_holidays,
                                      dept.holiday_subdiv),
    )
    if len(errors) > count:
        return None
    return DepartementSettings(code=code, **values)


def _code(text: str, depts: dict[str, Departement], seen: dict[str, int], number: int) -> str:
    code = text.strip().upper()
    if not code:
        raise DirectoryError("code du département manquant")
    if len(code) == 1 and code.isdigit():
        code = "0" + code
    if code not in depts:
        raise DirectoryError(f"département inconnu : « {text} »")
    if code in seen:
        raise DirectoryError(f"département {code} en double (déjà en ligne {seen[code]})")
    seen[code] = number
    return code


# --- database state and its text form ----------------------------------------------------

def _bad_extension(path: Path) -> str:
    return (f"extension non prise en charge : « {Path(path).suffix} » "
            "(attendu : .csv ou .xlsx)")
