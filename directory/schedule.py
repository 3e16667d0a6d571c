"""Pure answer to "what happens for département D at instant T?" — no database, no Flask."""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

#: How far ahead the next opening is searched (a département closed longer has none).
SEARCH_DAYS = 400


class State(enum.Enum):
    """The answer for one département at one instant."""

    open = "ouvert"
    closed = "fermé"
    no_phone_assistance = "pas d'assistance téléphonique"


class ClosedReason(enum.Enum):
    """Why a département is closed right now."""

    outside_hours = "en dehors des horaires"
    holiday = "jour férié"
    closure = "fermeture exceptionnelle"


@dataclass(frozen=True)
class Slot:
    """A weekly opening slot, local time; weekday 0 = Monday."""

    weekday: int
    start: time
    end: time


@dataclass(frozen=True)
class Exception_:
    """An exceptional closure (whole days) or opening (start/end times on those days)."""

    kind: str  # "closure" | "opening"
    start_date: date
    end_date: date
    reason: str = ""
    start_time: time | None = None
    end_time: time | None = None

    def covers(self, day: date) -> bool:
        """True when `day` is in the range."""
        return self.start_date <= day <= self.end_date


@dataclass(frozen=True)
class LineView:
    """One referent line to dial."""

    number: str
    label: str = ""


@dataclass(frozen=True)
class DepartementView:
    """Snapshot of a directory entry: everything the call flow needs, nothing live."""

    code: str
    name: str
    timezone: str = "Europe/Paris"
    holiday_subdiv: str | None = None
    phone_assistance: bool = True
    ring_strategy: str = "simultaneous"
    ring_timeout: int = 20
    voicemail_enabled: bool = False
    form_url: str | None = None
    email: str | None = None
    lines: tuple[LineView, ...] = ()
    slots: tuple[Slot, ...] = ()
    exceptions: tuple[Exception_, ...] = ()
    worked_holidays: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Availability:
    """State at an instant, with the reason when closed and the next opening instant (UTC)."""

    state: State
    reason: ClosedReason | None = None
    holiday_name: str | None = None
    closure_reason: str | None = None
    next_opening: datetime | None = None

    @property
    def is_open(self) -> bool:
        """True when calls are put through now."""
        return self.state is State.open


@lru_cache(maxsize=256)
def _holiday_table(subdiv: str | None, year: int) -> dict[date, str]:
    return dict(holidays.France(subdiv=subdiv, years=year, language="fr"))


def fold(text: str) -> str:
    """Lower case without accents, so "Simultanee" matches "simultanée"."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=16)
def holiday_names(subdiv: str | None) -> dict[str, str]:
    """Holiday names the library gives this subdivision around now, keyed by folded name."""
    year = date.today().year
    table = holidays.France(subdiv=subdiv, years=range(year - 2, year + 8), language="fr")
    # The library joins the names of holidays falling on the same day with "; ".
    return {fold(name): name.strip() for joined in table.values() for name in joined.split(";")}


def holiday_name(dept: DepartementView, day: date) -> str | None:
    """French name of the public holiday on `day` for this département, unless it is worked."""
    name = _holiday_table(dept.holiday_subdiv, day.year).get(day)
    if name is None:
        return None
    # holidays joins two holidays on one day ("Abolition de l'esclavage; Lundi de Pentecôte"):
    # the day is worked only if each of them is; otherwise name the ones that are not.
    off = [part for part in map(str.strip, name.split(";")) if part not in dept.worked_holidays]
    return "; ".join(off) or None


def _day_intervals(dept: DepartementView, day: date) -> tuple[list[tuple[time, time]], ClosedReason | None, str | None]:
    """Opening intervals of one local day, and why the day is closed when it has none."""
    for exc in dept.exceptions:
        if exc.kind == "closure" and exc.covers(day):
            return [], ClosedReason.closure, exc.reason
    openings = [(e.start_time, e.end_time) for e in dept.exceptions
                if e.kind == "opening" and e.covers(day) and e.start_time and e.end_time]
    if openings:
        return sorted(openings), None, None
    name = holiday_name(dept, day)
    if name:
        return [], ClosedReason.holiday, name
    weekly = sorted((s.start, s.end) for s in dept.slots if s.weekday == day.weekday())
    return weekly, (None if weekly else ClosedReason.outside_hours), None


def next_opening(dept: DepartementView, at: datetime) -> datetime | None:
    """First instant at or after `at` when the département opens (UTC), or None within SEARCH_DAYS."""
    tz = ZoneInfo(dept.timezone)
    local = at.astimezone(tz)
    for offset in range(SEARCH_DAYS):
        day = local.date() + timedelta(days=offset)
        for start, end in _day_intervals(dept, day)[0]:
            begin = datetime.combine(day, start, tz)
            if offset == 0 and datetime.combine(day, end, tz) <= local:
                continue
            return max(begin, local).astimezone(at.tzinfo)
    return None


def availability(dept: DepartementView, at: datetime) -> Availability:
    """Open, closed (with reason and next opening), or no phone assistance, at instant `at`."""
    if at.tzinfo is None:
        raise ValueError("availability() needs a timezone-aware instant")
    if not dept.phone_assistance or not dept.lines:
        # Without a line to ring there is no phone assistance, whatever the hours say.
        return Availability(State.no_phone_assistance)
    local = at.astimezone(ZoneInfo(dept.timezone))
    intervals, reason, detail = _day_intervals(dept, local.date())
    now = local.time()
    if any(start <= now < end for start, end in intervals):
        return Availability(State.open)
    after = next_opening(dept, at + timedelta(seconds=1))
    return Availability(
        State.closed,
        reason=reason or ClosedReason.outside_hours,
        holiday_name=detail if reason is ClosedReason.holiday else None,
        closure_reason=detail if reason is ClosedReason.closure else None,
        next_opening=after,
    )


@dataclass(frozen=True)
class CalendarDay:
    """What one local day looks like for a département (the year view)."""

    day: date
    #: "closure", "opening", "holiday", "worked_holiday", "open" or "closed" (no slot that day).
    kind: str
    #: Holiday name, closure or opening reason.
    label: str = ""
    intervals: tuple[tuple[time, time], ...] = ()


def calendar_day(dept: DepartementView, day: date) -> CalendarDay:
    """The day's kind and label: closures win over openings, openings over holidays."""
    intervals, reason, detail = _day_intervals(dept, day)
    if reason is ClosedReason.closure:
        return CalendarDay(day, "closure", detail or "")
    if reason is ClosedReason.holiday:
        return CalendarDay(day, "holiday", detail or "")
    openings = [e for e in dept.exceptions if e.kind == "opening" and e.covers(day)]
    if openings:
        return CalendarDay(day, "opening", openings[0].reason, tuple(intervals))
    listed = _holiday_table(dept.holiday_subdiv, day.year).get(day)
    if listed:  # a holiday, but worked here
        return CalendarDay(day, "worked_holiday", listed.replace(";", ","), tuple(intervals))
    return CalendarDay(day, "open" if intervals else "closed", "", tuple(intervals))
