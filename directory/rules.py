"""The directory's rules: parse, validate and format one setting's value at a time.

Pure functions, no database: the import, the CLI, the web forms and the API all call them, so a
value is accepted or refused the same way everywhere. Each parser takes text as a person typed
it and returns the normalized value, or raises DirectoryError with a French message naming
what is wrong; each formatter gives the text the matching parser reads back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, time

import phonenumbers

from core import text as text_policy
from core.spreadsheets import EARLIEST_YEAR, LATEST_YEAR, is_plausible_year
from directory.limits import MAX_LINES, MAX_TEXT, RING_TIMEOUT_MAX, RING_TIMEOUT_MIN
from directory.models import RingStrategy
from directory.schedule import fold, holiday_names

#: Day names, Monday first (weekday 0), as typed in files and forms.
DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
RING_LABELS = {RingStrategy.simultaneous: "simultanée", RingStrategy.sequential: "successive"}
#: Between the items of a list held in one text (lines, slot groups, periods, holidays).
SEPARATOR = " ; "

#: A weekly slot: (weekday, start, end), local time, weekday 0 = Monday.
WeeklySlot = tuple[int, time, time]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PERIOD = re.compile(r"(\S+?)(?:\s*\.\.\s*(\S+))?(?:\s+(.*))?")
_INTERVAL = re.compile(r"(\d{1,2})[:h](\d{2})\s*-\s*(\d{1,2})[:h](\d{2})")
_SLOT_GROUP = re.compile(r"([^\W\d_]+)(?:\s*-\s*([^\W\d_]+))?\s+(.+)")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class DirectoryError(ValueError):
    """A directory edit was refused; the message is French and names what is wrong."""


@dataclass(frozen=True)
class Period:
    """An exceptional closure or opening: whole days, with hours for openings only."""

    start_date: date
    end_date: date
    reason: str
    start_time: time | None = None
    end_time: time | None = None


# --- lists ------------------------------------------------------------------------------------

def split_list(text: str) -> list[str]:
    """The items of a `;`-separated text, blanks dropped."""
    return [part.strip() for part in text.split(";") if part.strip()]


def parse_each(items: Iterable[str], parse: Callable, *args) -> list:
    """Parse every item, reporting every refused one at once (messages joined by " ; ")."""
    results, messages = [], []
    for item in items:
        try:
            results.append(parse(item, *args))
        except DirectoryError as exc:
            messages.append(str(exc))
    if messages:
        raise DirectoryError(" ; ".join(messages))
    return results


def quoted(names: Iterable[str]) -> str:
    """Names in French quotes, comma-separated: « a », « b »."""
    return ", ".join(f"« {n} »" for n in names)


# --- text -------------------------------------------------------------------------------------

def checked_text(value: str | None, where: str) -> str | None:
    """Text a directory edit stores, refused when it breaks the text policy (names `where`)."""
    try:
        return value if value is None else text_policy.check(value, where)
    except text_policy.TextRefused as exc:
        raise DirectoryError(str(exc)) from None


def parse_free_text(text: str) -> str | None:
    """A short free text (form address…): text policy, one line, at most MAX_TEXT characters;
    None when empty."""
    checked_text(text, "texte")
    if "\n" in text or "\r" in text:
        raise DirectoryError("le texte doit tenir sur une ligne")
    if len(text) > MAX_TEXT:
        raise DirectoryError(f"texte trop long ({MAX_TEXT} caractères au maximum)")
    return text or None


def parse_email(text: str) -> str | None:
    """An email address, or None when empty."""
    if text and not _EMAIL.fullmatch(text):
        raise DirectoryError(f"adresse de courriel invalide : « {text} »")
    return parse_free_text(text)


def parse_reason(text: str | None) -> str:
    """The reason of a closure or opening, told to callers: text policy, at most MAX_TEXT."""
    reason = checked_text(text or "", "motif de la période")
    if len(reason) > MAX_TEXT:
        raise DirectoryError(f"motif trop long ({MAX_TEXT} caractères au maximum)")
    return reason


def parse_yes_no(text: str) -> bool:
    """« oui »/« non » (also vrai/faux, 1/0), accents and case aside."""
    folded = fold(text)
    if folded in ("oui", "vrai", "1"):
        return True
    if folded in ("non", "faux", "0"):
        return False
    raise DirectoryError(f"« oui » ou « non » attendu : « {text} »")


def format_yes_no(value: bool) -> str:
    """« oui » or « non »."""
    return "oui" if value else "non"


# --- lines and ringing ------------------------------------------------------------------------

def normalize_number(raw: str, region: str) -> str:
    """Parse a number typed for a département's region and return it in E.164.

    "0590 12 34 56" for region GP gives "+590590123456".
    """
    text = (raw or "").strip()
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise DirectoryError(f"numéro de téléphone illisible : « {text} »") from None
    if not phonenumbers.is_valid_number(parsed):
        raise DirectoryError(f"numéro de téléphone invalide pour la région {region} : « {text} »")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_lines(numbers: Iterable[str], region: str) -> tuple[str, ...]:
    """A département's line numbers in E.164, in order: each valid, at most MAX_LINES, no double."""
    normalized = parse_each(numbers, normalize_number, region)
    if len(normalized) > MAX_LINES:
        raise DirectoryError(f"{MAX_LINES} lignes au maximum ({len(normalized)} données)")
    doubled = sorted({n for n in normalized if normalized.count(n) > 1})
    if doubled:
        raise DirectoryError("numéro en double : " + quoted(doubled))
    return tuple(normalized)


def parse_lines(text: str, region: str) -> tuple[str, ...]:
    """`01 99 00 93 01 ; 02 61 91 93 02` → the numbers in E.164 (see `check_lines`)."""
    return check_lines(split_list(text), region)


def format_lines(numbers: Iterable[str]) -> str:
    """Numbers as one text, `;`-separated."""
    return SEPARATOR.join(numbers)


def parse_ring_strategy(text: str) -> RingStrategy:
    """« simultanée » or « successive », accents and case aside."""
    for strategy, label in RING_LABELS.items():
        if fold(text) == fold(label):
            return strategy
    raise DirectoryError(f"« simultanée » ou « successive » attendu : « {text} »")


def format_ring_strategy(strategy: RingStrategy) -> str:
    """The word `parse_ring_strategy` reads."""
    return RING_LABELS[strategy]


def parse_ring_timeout(text: str | int) -> int:
    """Whole seconds between RING_TIMEOUT_MIN and RING_TIMEOUT_MAX."""
    text = str(text)
    if not (text.isdecimal() and RING_TIMEOUT_MIN <= int(text) <= RING_TIMEOUT_MAX):
        raise DirectoryError(f"nombre entier de secondes entre {RING_TIMEOUT_MIN} et "
                             f"{RING_TIMEOUT_MAX} attendu : « {text} »")
    return int(text)


# --- weekly slots -----------------------------------------------------------------------------

def parse_day(text: str) -> int:
    """A French day name → weekday (0 = Monday)."""
    try:
        return DAYS.index(fold(text))
    except ValueError:
        raise DirectoryError(f"jour inconnu : « {text} » (attendu : {', '.join(DAYS)})") from None


def parse_interval(text: str) -> tuple[time, time]:
    """`09:30-11:30` (or `9h30-11h30`) → (start, end), end after start."""
    match = _INTERVAL.fullmatch(text)
    try:
        start, end = (time(int(match[1]), int(match[2])), time(int(match[3]), int(match[4])))
    except (TypeError, ValueError):
        raise DirectoryError(f"horaire invalide, format HH:MM-HH:MM attendu : « {text} »") from None
    if not start < end:
        raise DirectoryError(f"l'heure de fin doit suivre l'heure de début : « {text} »")
    return start, end


def format_interval(start: time, end: time) -> str:
    """`09:30-11:30`."""
    return f"{start:%H:%M}-{end:%H:%M}"


def parse_slot_group(text: str) -> list[WeeklySlot]:
    """`lundi-vendredi 09:30-11:30 14:00-16:30` → one slot per day and interval."""
    match = _SLOT_GROUP.fullmatch(text)
    if not match:
        raise DirectoryError(f"jour(s) puis horaires attendus, ex. « lundi-vendredi 09:30-11:30 » : "
                             f"« {text} »")
    first = parse_day(match[1])
    last = parse_day(match[2]) if match[2] else first
    if last < first:
        raise DirectoryError(f"plage de jours à l'envers : « {match[1]}-{match[2]} »")
    intervals = [parse_interval(part) for part in match[3].split()]
    return [(day, start, end) for day in range(first, last + 1) for start, end in intervals]


def check_slots(slots: Iterable[WeeklySlot]) -> tuple[WeeklySlot, ...]:
    """Weekly slots sorted by day and hour; refused when two of one day overlap."""
    slots = sorted(slots)
    for (day, _, end), (next_day, next_start, _) in zip(slots, slots[1:]):
        if day == next_day and next_start < end:
            raise DirectoryError(f"créneaux qui se chevauchent le {DAYS[day]}")
    return tuple(slots)


def parse_slots(text: str) -> tuple[WeeklySlot, ...]:
    """`lundi-vendredi 09:30-11:30 14:00-16:30 ; samedi 09:00-12:00` → sorted weekly slots."""
    return check_slots(s for group in parse_each(split_list(text), parse_slot_group) for s in group)


def format_slots(slots: Iterable[WeeklySlot]) -> str:
    """Consecutive days with the same intervals share one group: `lundi-vendredi 09:30-11:30`."""
    slots = list(slots)
    by_day = [" ".join(format_interval(start, end) for wd, start, end in slots if wd == day)
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


# --- dates and periods ------------------------------------------------------------------------

def parse_date(text: str) -> date:
    """`AAAA-MM-JJ`, in a plausible year (EARLIEST_YEAR to LATEST_YEAR)."""
    try:
        day = date.fromisoformat(text) if _DATE.fullmatch(text) else None
    except ValueError:
        day = None
    if day is None:
        raise DirectoryError(f"date invalide, format AAAA-MM-JJ attendu : « {text} »")
    if not is_plausible_year(day.year):
        raise DirectoryError(f"date hors des années {EARLIEST_YEAR} à {LATEST_YEAR} : « {text} »")
    return day


def check_dates(start: date, end: date) -> None:
    """A date range in plausible years (EARLIEST_YEAR to LATEST_YEAR), end not before start."""
    for day in (start, end):
        if not is_plausible_year(day.year):
            raise DirectoryError(f"date hors des années {EARLIEST_YEAR} à {LATEST_YEAR} : "
                                 f"« {day.isoformat()} »")
    if end < start:
        raise DirectoryError("la date de fin précède la date de début")


def check_opening_hours(start: time | None, end: time | None) -> None:
    """An exceptional opening says its hours, end after start."""
    if not (start and end and start < end):
        raise DirectoryError("une ouverture exceptionnelle doit préciser ses horaires")


def parse_period(text: str, opening: bool) -> Period:
    """`2026-12-24..2026-12-31 Motif`, with `HH:MM-HH:MM` after the dates for an opening."""
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise DirectoryError(f"période illisible : « {text} »")
    start_text, end_text, rest = match.groups(default="")
    start = parse_date(start_text)
    end = parse_date(end_text) if end_text else start
    start_time = end_time = None
    try:
        check_dates(start, end)
        if opening:
            hours, _, rest = rest.partition(" ")
            if not hours:
                check_opening_hours(None, None)
    except DirectoryError as exc:
        raise DirectoryError(f"{exc} : « {text} »") from None
    if opening:
        start_time, end_time = parse_interval(hours)
    return Period(start, end, parse_reason(rest.strip()), start_time, end_time)


def period_key(p: Period):
    """Sort key of periods: by dates, then hours, then reason."""
    return (p.start_date, p.end_date, p.start_time or time(0), p.reason)


def parse_periods(text: str, opening: bool) -> tuple[Period, ...]:
    """`;`-separated periods (see `parse_period`), sorted."""
    return tuple(sorted(parse_each(split_list(text), parse_period, opening), key=period_key))


def format_period(p: Period) -> str:
    """The text `parse_period` reads back."""
    text = p.start_date.isoformat()
    if p.end_date != p.start_date:
        text += ".." + p.end_date.isoformat()
    if p.start_time and p.end_time:
        text += " " + format_interval(p.start_time, p.end_time)
    return f"{text} {p.reason}" if p.reason else text


def format_periods(periods: Iterable[Period]) -> str:
    """Periods as one text, `;`-separated."""
    return SEPARATOR.join(format_period(p) for p in periods)


# --- public holidays --------------------------------------------------------------------------

def known_holidays(subdivs: Iterable[str | None]) -> dict[str, str]:
    """Holiday names of these holidays.France subdivisions, keyed by folded name."""
    return {folded: name for subdiv in subdivs for folded, name in holiday_names(subdiv).items()}


def parse_holiday(name: str, subdiv: str | None) -> str:
    """A holiday of this subdivision, accents and case aside, spelt as the library spells it."""
    known = holiday_names(subdiv)
    if fold(name) not in known:
        raise DirectoryError(f"jour férié inconnu pour ce département : « {name} »")
    return known[fold(name)]


def parse_holidays(text: str, subdiv: str | None) -> tuple[str, ...]:
    """`;`-separated holiday names of a subdivision → sorted canonical names, once each."""
    return tuple(sorted(set(parse_each(split_list(text), parse_holiday, subdiv))))


def format_holidays(names: Iterable[str]) -> str:
    """Holiday names as one text, `;`-separated."""
    return SEPARATOR.join(names)
