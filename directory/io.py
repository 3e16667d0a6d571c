"""Bulk import and export of the directory as CSV or XLSX: one row per département.

Import is all or nothing: every row is validated first, then every change is applied.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import openpyxl
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from core import text as text_policy
from core.spreadsheets import (EARLIEST_YEAR, FORMULA_PREFIXES, LATEST_YEAR, NOT_WORKBOOK,
                               ReadBudget, UnreadableFile, check_size, is_plausible_year, keep_as_text,
                               open_untrusted_workbook, sheet_rows)
from directory.models import Departement, OpeningSlot, RingStrategy, WorkedHoliday
from directory.operations import (DirectoryError, add_exception, normalize_number, set_lines,
                                  set_worked_holiday)
from directory.reference import official_order
from directory.schedule import fold as _fold, holiday_names

COLUMNS = ("Code", "Département", "Assistance téléphonique", "Lignes", "Sonnerie",
           "Durée de sonnerie (s)", "Messagerie vocale", "Formulaire", "Courriel", "Horaires",
           "Fermetures exceptionnelles", "Ouvertures exceptionnelles", "Jours fériés travaillés")
#: Files are refused above this size; an XLSX also above this size once unzipped (zip bomb).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_UNZIPPED_BYTES = 20 * 1024 * 1024
#: There are 101 départements: anything much longer is not a directory file.
MAX_ROWS = 1000
#: Twilio's <Dial> takes at most 10 <Number>.
MAX_LINES = 10
MAX_TEXT = 200

DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
RING_LABELS = {RingStrategy.simultaneous: "simultanée", RingStrategy.sequential: "successive"}
SEPARATOR = " ; "

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PERIOD = re.compile(r"(\S+?)(?:\s*\.\.\s*(\S+))?(?:\s+(.*))?")
_INTERVAL = re.compile(r"(\d{1,2})[:h](\d{2})\s*-\s*(\d{1,2})[:h](\d{2})")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Period:
    """An exceptional closure or opening as written in the file (times for openings only)."""

    start_date: date
    end_date: date
    reason: str
    start_time: time | None = None
    end_time: time | None = None


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
    slots: tuple[tuple[int, time, time], ...]
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
        problems.append("colonnes manquantes : " + _quoted(missing))
    if unknown:
        problems.append("colonnes inconnues : " + _quoted(unknown))
    if doubled:
        problems.append("colonnes en double : " + _quoted(doubled))
    if problems:
        raise DirectoryError("première ligne incorrecte (" + " ; ".join(problems)
                             + "). Colonnes attendues : " + ", ".join(COLUMNS))
    return header


def _quoted(names: list[str]) -> str:
    return ", ".join(f"« {n} »" for n in names)


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
        phone_assistance=cell("Assistance téléphonique", _yes_no),
        lines=dept and cell("Lignes", _lines, dept.phone_region),
        ring_strategy=cell("Sonnerie", _ring_strategy),
        ring_timeout=cell("Durée de sonnerie (s)", _ring_timeout),
        voicemail_enabled=cell("Messagerie vocale", _yes_no),
        form_url=cell("Formulaire", _free_text),
        email=cell("Courriel", _email),
        slots=cell("Horaires", _slots),
        closures=cell("Fermetures exceptionnelles", _periods, False),
        openings=cell("Ouvertures exceptionnelles", _periods, True),
        worked_holidays=dept and cell("Jours fériés travaillés", _holidays, dept.holiday_subdiv),
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


def _yes_no(text: str) -> bool:
    folded = _fold(text)
    if folded in ("oui", "vrai", "1"):
        return True
    if folded in ("non", "faux", "0"):
        return False
    raise DirectoryError(f"« oui » ou « non » attendu : « {text} »")


def _ring_strategy(text: str) -> RingStrategy:
    for strategy, label in RING_LABELS.items():
        if _fold(text) == _fold(label):
            return strategy
    raise DirectoryError(f"« simultanée » ou « successive » attendu : « {text} »")


def _ring_timeout(text: str) -> int:
    if not (text.isdecimal() and 5 <= int(text) <= 120):
        raise DirectoryError(f"nombre entier de secondes entre 5 et 120 attendu : « {text} »")
    return int(text)


def _free_text(text: str) -> str | None:
    if len(text) > MAX_TEXT:
        raise DirectoryError(f"texte trop long ({MAX_TEXT} caractères au maximum)")
    return text or None


def _email(text: str) -> str | None:
    if text and not _EMAIL.fullmatch(text):
        raise DirectoryError(f"adresse de courriel invalide : « {text} »")
    return _free_text(text)


def _lines(text: str, region: str) -> tuple[str, ...]:
    numbers = _each(_split(text), normalize_number, region)
    if len(numbers) > MAX_LINES:
        raise DirectoryError(f"{MAX_LINES} lignes au maximum ({len(numbers)} données)")
    doubled = sorted({n for n in numbers if numbers.count(n) > 1})
    if doubled:
        raise DirectoryError("numéro en double : " + _quoted(doubled))
    return tuple(numbers)


def _slots(text: str) -> tuple[tuple[int, time, time], ...]:
    slots = sorted(s for group in _each(_split(text), _slot_group) for s in group)
    for (day, _, end), (next_day, next_start, _) in zip(slots, slots[1:]):
        if day == next_day and next_start < end:
            raise DirectoryError(f"créneaux qui se chevauchent le {DAYS[day]}")
    return tuple(slots)


def _slot_group(text: str) -> list[tuple[int, time, time]]:
    """`lundi-vendredi 09:30-11:30 14:00-16:30` → one slot per day and interval."""
    match = re.fullmatch(r"([^\W\d_]+)(?:\s*-\s*([^\W\d_]+))?\s+(.+)", text)
    if not match:
        raise DirectoryError(f"jour(s) puis horaires attendus, ex. « lundi-vendredi 09:30-11:30 » : "
                             f"« {text} »")
    first = _day(match[1])
    last = _day(match[2]) if match[2] else first
    if last < first:
        raise DirectoryError(f"plage de jours à l'envers : « {match[1]}-{match[2]} »")
    intervals = [_interval(part) for part in match[3].split()]
    return [(day, start, end) for day in range(first, last + 1) for start, end in intervals]


def _day(text: str) -> int:
    try:
        return DAYS.index(_fold(text))
    except ValueError:
        raise DirectoryError(f"jour inconnu : « {text} » (attendu : {', '.join(DAYS)})") from None


def _interval(text: str) -> tuple[time, time]:
    match = _INTERVAL.fullmatch(text)
    try:
        start, end = (time(int(match[1]), int(match[2])), time(int(match[3]), int(match[4])))
    except (TypeError, ValueError):
        raise DirectoryError(f"horaire invalide, format HH:MM-HH:MM attendu : « {text} »") from None
    if not start < end:
        raise DirectoryError(f"l'heure de fin doit suivre l'heure de début : « {text} »")
    return start, end


def _periods(text: str, opening: bool) -> tuple[Period, ...]:
    return tuple(sorted(_each(_split(text), _period, opening), key=_period_key))


def _period(text: str, opening: bool) -> Period:
    """`2026-12-24..2026-12-31 Motif`, with `HH:MM-HH:MM` after the dates for an opening."""
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise DirectoryError(f"période illisible : « {text} »")
    start_text, end_text, rest = match.groups(default="")
    start = _date(start_text)
    end = _date(end_text) if end_text else start
    if end < start:
        raise DirectoryError(f"la date de fin précède la date de début : « {text} »")
    start_time = end_time = None
    if opening:
        hours, _, rest = rest.partition(" ")
        if not hours:
            raise DirectoryError(f"une ouverture exceptionnelle doit préciser ses horaires : "
                                 f"« {text} »")
        start_time, end_time = _interval(hours)
    reason = rest.strip()
    if len(reason) > MAX_TEXT:
        raise DirectoryError(f"motif trop long ({MAX_TEXT} caractères au maximum)")
    return Period(start, end, reason, start_time, end_time)


def _date(text: str) -> date:
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            if not is_plausible_year(day.year):
                raise DirectoryError(f"date hors des années {EARLIEST_YEAR} à {LATEST_YEAR} : "
                                     f"« {text} »")
            return day
    except ValueError:
        pass
    raise DirectoryError(f"date invalide, format AAAA-MM-JJ attendu : « {text} »")


def _holidays(text: str, subdiv: str | None) -> tuple[str, ...]:
    known = holiday_names(subdiv)

    def canonical(name: str) -> str:
        if _fold(name) not in known:
            raise DirectoryError(f"jour férié inconnu pour ce département : « {name} »")
        return known[_fold(name)]

    return tuple(sorted(set(_each(_split(text), canonical))))


def _each(items: list[str], parse, *args) -> list:
    """Parse every item, reporting every refused one at once."""
    results, messages = [], []
    for item in items:
        try:
            results.append(parse(item, *args))
        except DirectoryError as exc:
            messages.append(str(exc))
    if messages:
        raise DirectoryError(" ; ".join(messages))
    return results


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


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


def _period_key(p: Period):
    return (p.start_date, p.end_date, p.start_time or time(0), p.reason)


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
        return tuple(sorted(found, key=_period_key))

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
        "Assistance téléphonique": _yes_no_text(s.phone_assistance),
        "Lignes": SEPARATOR.join(s.lines),
        "Sonnerie": RING_LABELS[s.ring_strategy],
        "Durée de sonnerie (s)": str(s.ring_timeout),
        "Messagerie vocale": _yes_no_text(s.voicemail_enabled),
        "Formulaire": s.form_url or "",
        "Courriel": s.email or "",
        "Horaires": _format_slots(s.slots),
        "Fermetures exceptionnelles": SEPARATOR.join(_format_period(p) for p in s.closures),
        "Ouvertures exceptionnelles": SEPARATOR.join(_format_period(p) for p in s.openings),
        "Jours fériés travaillés": SEPARATOR.join(s.worked_holidays),
    }


def _yes_no_text(value: bool) -> str:
    return "oui" if value else "non"


def _format_slots(slots: tuple[tuple[int, time, time], ...]) -> str:
    """Consecutive days with the same intervals share one group: `lundi-vendredi 09:30-11:30`."""
    by_day = [" ".join(_format_interval(start, end) for wd, start, end in slots if wd == day)
              for day in range(7)]
    groups, day = [], 0
    while day < 7:
        last = day
        while last + 1 < 7 and by_day[last + 1] == by_day[day]:
            last += 1
        if by_day[day]:
            days = DAYS[day] if last == day else f"{DAYS[day]}-{DAYS[last]}"
            groups.append(f"{days} {by_day[day]}")
        day = last + 1
    return SEPARATOR.join(groups)


def _format_period(p: Period) -> str:
    text = p.start_date.isoformat()
    if p.end_date != p.start_date:
        text += ".." + p.end_date.isoformat()
    if p.start_time and p.end_time:
        text += " " + _format_interval(p.start_time, p.end_time)
    return f"{text} {p.reason}" if p.reason else text


def _format_interval(start: time, end: time) -> str:
    return f"{start:%H:%M}-{end:%H:%M}"
