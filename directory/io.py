"""Bulk import and export of the directory as CSV or XLSX: one row per département.

Import is all or nothing: every row is validated first, then every change is applied. Files
only live here (read, header, write, row ↔ Settings, diff, apply); each cell is parsed and
formatted by `directory/rules.py`, as in every other place a setting is typed.
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
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from core import text as text_policy
from core.spreadsheets import (FORMULA_PREFIXES, NOT_WORKBOOK, ReadBudget, UnreadableFile,
                               check_size, keep_as_text, open_untrusted_workbook, sheet_rows)
from directory import rules
from directory.models import Departement, OpeningSlot, RingStrategy, WorkedHoliday
from directory.operations import add_exception, set_lines, set_worked_holiday
from directory.reference import official_order
from directory.rules import DirectoryError, Period

COLUMNS = ("Code", "Département", "Assistance téléphonique", "Lignes", "Sonnerie",
           "Durée de sonnerie (s)", "Messagerie vocale", "Formulaire", "Courriel", "Horaires",
           "Fermetures exceptionnelles", "Ouvertures exceptionnelles", "Jours fériés travaillés")
#: Files are refused above this size; an XLSX also above this size once unzipped (zip bomb).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_UNZIPPED_BYTES = 20 * 1024 * 1024
#: There are 101 départements: anything much longer is not a directory file.
MAX_ROWS = 1000


@dataclass(frozen=True)
class Settings:
    """Everything one row says about one département, normalized so that rows compare equal."""

    code: str
    phone_assistance: bool
    lines: tuple[str, ...]
    ring_strategy: RingStrategy
    ring_timeout: int
    voicemail_enabled: bool
    form_url: str | None
    email: str | None
    slots: tuple[rules.WeeklySlot, ...]
    closures: tuple[Period, ...]
    openings: tuple[Period, ...]
    worked_holidays: tuple[str, ...]


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
    depts = official_order(_load(db), lambda d: d.code)
    worked = _worked_holidays(db)
    return [{column: text_policy.clean(value) for column, value in
             _format(_current(d, worked.get(d.code, ())), d.name).items()} for d in depts]


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

def validate(db: Session, rows: list[Row]) -> tuple[list[Settings], list[RowError]]:
    """Check every row; return the settings that differ from the database, and every error."""
    depts = {d.code: d for d in _load(db)}
    worked = _worked_holidays(db)
    seen: dict[str, int] = {}
    changes, errors = [], []
    for row in rows:
        settings = _parse_row(row, depts, seen, errors)
        if settings is not None:
            dept = depts[settings.code]
            if settings != _current(dept, worked.get(dept.code, ())):
                changes.append(settings)
    return changes, errors


def apply(db: Session, changes: list[Settings]) -> None:
    """Replace each changed département's settings, lines, hours, exceptions and worked holidays."""
    for s in changes:
        dept = db.get(Departement, s.code)
        dept.phone_assistance = s.phone_assistance
        dept.ring_strategy = s.ring_strategy
        dept.ring_timeout = s.ring_timeout
        dept.voicemail_enabled = s.voicemail_enabled
        dept.form_url = s.form_url
        dept.email = s.email
        labels = {line.number: line.label for line in dept.lines}
        set_lines(db, dept, [(number, labels.get(number)) for number in s.lines])
        dept.slots = [OpeningSlot(weekday=wd, start=start, end=end) for wd, start, end in s.slots]
        dept.exceptions.clear()
        for kind, periods in (("closure", s.closures), ("opening", s.openings)):
            for p in periods:
                add_exception(db, dept, kind, p.start_date, p.end_date, p.reason,
                              p.start_time, p.end_time)
        # The file lists the holidays the département works; its days kept off stay as they are.
        db.execute(delete(WorkedHoliday).where(WorkedHoliday.departement_code == s.code,
                                               WorkedHoliday.worked))
        for name in s.worked_holidays:
            set_worked_holiday(db, name, s.code)
    db.flush()


def _parse_row(row: Row, depts: dict[str, Departement], seen: dict[str, int],
               errors: list[RowError]) -> Settings | None:
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
    return Settings(code=code, **values)


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


def _load(db: Session) -> list[Departement]:
    return list(db.scalars(select(Departement).options(
        selectinload(Departement.lines), selectinload(Departement.slots),
        selectinload(Departement.exceptions))))


def _worked_holidays(db: Session) -> dict[str, tuple[str, ...]]:
    """Per-département worked holidays (the national ones are not part of the file)."""
    result: dict[str, list[str]] = {}
    for w in db.scalars(select(WorkedHoliday).where(WorkedHoliday.departement_code.is_not(None),
                                                    WorkedHoliday.worked)):
        result.setdefault(w.departement_code, []).append(w.holiday_name)
    return {code: tuple(sorted(names)) for code, names in result.items()}


def _normal(text: str | None) -> str:
    """Stored text as an export writes it and an import reads it back: exports round-trip."""
    return " ".join(text_policy.clean(text or "").split())


def _current(dept: Departement, worked: tuple[str, ...]) -> Settings:
    """A département's settings in the database, in the same normalized form as a parsed row."""
    def periods(kind: str) -> tuple[Period, ...]:
        opening = kind == "opening"  # closures are whole days: stray hours are not theirs
        found = [Period(e.start_date, e.end_date, _normal(e.reason),
                        e.start_time if opening else None, e.end_time if opening else None)
                 for e in dept.exceptions if e.kind.name == kind]
        return tuple(sorted(found, key=rules.period_key))

    return Settings(
        code=dept.code, phone_assistance=dept.phone_assistance,
        lines=tuple(line.number for line in dept.lines if line.active),
        ring_strategy=dept.ring_strategy, ring_timeout=dept.ring_timeout,
        voicemail_enabled=dept.voicemail_enabled, form_url=_normal(dept.form_url) or None,
        email=_normal(dept.email) or None,
        slots=tuple(sorted((s.weekday, s.start, s.end) for s in dept.slots)),
        closures=periods("closure"), openings=periods("opening"), worked_holidays=worked)


def _format(s: Settings, name: str) -> dict[str, str]:
    """Settings as the text cells of one row."""
    return {
        "Code": s.code,
        "Département": name,
        "Assistance téléphonique": rules.format_yes_no(s.phone_assistance),
        "Lignes": rules.format_lines(s.lines),
        "Sonnerie": rules.format_ring_strategy(s.ring_strategy),
        "Durée de sonnerie (s)": str(s.ring_timeout),
        "Messagerie vocale": rules.format_yes_no(s.voicemail_enabled),
        "Formulaire": s.form_url or "",
        "Courriel": s.email or "",
        "Horaires": rules.format_slots(s.slots),
        "Fermetures exceptionnelles": rules.format_periods(s.closures),
        "Ouvertures exceptionnelles": rules.format_periods(s.openings),
        "Jours fériés travaillés": rules.format_holidays(s.worked_holidays),
    }
