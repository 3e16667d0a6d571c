"""The indicators of the national team's dashboard, computed in SQL (GROUP BY), never row by row.

One module for every figure: the dashboard, the API and whoever else shows a KPI call these
functions, so they cannot disagree. Definitions follow the workbook's « Résultats » sheet
(tracking/workbook.py):

- a call is *received* when it reached a département (`Call.departement_code` set) and is not a
  simulator test call (`Call.test`); each call counts once whatever its number of motifs;
- a period is a range of *local* dates, evaluated in each département's own timezone (a call
  at 23:30 in Paris on 31 December belongs to December, whatever the UTC date says);
- answer rate = answered / (received − out of hours − no phone assistance), None when the
  denominator is zero;
- thématiques and motifs count every solicitation row (all channels, one row per motif), as the
  workbook's volumes do; unqualified rows are « À qualifier ».

Everything takes a session, a period (`start`, `end`, inclusive dates) and a scope: `codes=None`
for the whole country, or a list of département codes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, case, cast, false, func, or_, select
from sqlalchemy.orm import Session

from core.spreadsheets import EARLIEST_YEAR, LATEST_YEAR, is_plausible_year
from directory.models import Departement
from directory.reference import official_order
from tracking.columns import TO_QUALIFY
from tracking.models import Call, Motif, Outcome, Solicitation, Thematique

#: Days of the week as the heat map shows them, Monday first.
WEEKDAYS = ("Lundi", "Mardi", "Mercredi", "Jeudi", "Vendredi", "Samedi", "Dimanche")
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
          "septembre", "octobre", "novembre", "décembre")
#: Longest period accepted, in days (a few years: the figures stay meaningful and fast).
MAX_DAYS = 3 * 366


class PeriodTooLong(ValueError):
    """The period asked for exceeds MAX_DAYS or ends before it starts (French message)."""


def check_period(start: date, end: date) -> None:
    """Refuse an inverted, overlong or implausible period with a French message."""
    if not (is_plausible_year(start.year) and is_plausible_year(end.year)):
        raise PeriodTooLong(f"dates hors des années {EARLIEST_YEAR} à {LATEST_YEAR}")
    if end < start:
        raise PeriodTooLong("la date de fin précède la date de début")
    if (end - start).days + 1 > MAX_DAYS:
        raise PeriodTooLong(f"la période dépasse {MAX_DAYS} jours")


# --- figures -----------------------------------------------------------------------------

@dataclass
class Figures:
    """Call counts of a scope (national, one département, one month…) and what follows."""

    received: int = 0
    by_outcome: dict[Outcome, int] = field(default_factory=dict)
    #: Calls still in progress or whose outcome is unknown.
    unknown: int = 0
    wait_answered_total: int = 0
    wait_answered_count: int = 0
    wait_total: int = 0
    wait_count: int = 0
    talk_total: int = 0
    talk_count: int = 0

    def count(self, outcome: Outcome) -> int:
        """Calls that ended with `outcome`."""
        return self.by_outcome.get(outcome, 0)

    @property
    def answered(self) -> int:
        """Calls a referent answered."""
        return self.count(Outcome.answered)

    @property
    def out_of_hours(self) -> int:
        """Calls arrived while the département was closed (hours, holiday, closure)."""
        return self.count(Outcome.out_of_hours)

    @property
    def no_phone_assistance(self) -> int:
        """Calls to a département that offers no phone assistance."""
        return self.count(Outcome.no_phone_assistance)

    @property
    def rate_base(self) -> int:
        """The answer rate's denominator: received − out of hours − no phone assistance."""
        return self.received - self.out_of_hours - self.no_phone_assistance

    @property
    def answer_rate(self) -> float | None:
        """answered / (received − out of hours − no phone assistance); None when undefined."""
        return self.answered / self.rate_base if self.rate_base > 0 else None

    @property
    def out_of_hours_share(self) -> float | None:
        """Share of the calls received that arrived while closed; None without calls."""
        return self.out_of_hours / self.received if self.received else None

    @property
    def average_wait_answered(self) -> float | None:
        """Mean seconds from the first ring to the answer, over answered calls."""
        return _mean(self.wait_answered_total, self.wait_answered_count)

    @property
    def average_wait(self) -> float | None:
        """Mean wait over every call with a wait (the workbook's « Attente moyenne »)."""
        return _mean(self.wait_total, self.wait_count)

    @property
    def average_talk(self) -> float | None:
        """Mean talking time of answered calls, in seconds."""
        return _mean(self.talk_total, self.talk_count)

    def add(self, other: Figures) -> None:
        """Add another scope's figures to these."""
        self.received += other.received
        self.unknown += other.unknown
        for outcome, n in other.by_outcome.items():
            self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + n
        for name in ("wait_answered_total", "wait_answered_count", "wait_total", "wait_count",
                     "talk_total", "talk_count"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _mean(total: int, count: int) -> float | None:
    return total / count if count else None


@dataclass(frozen=True)
class ComparisonRow:
    """One département's line in the comparison table."""

    code: str
    name: str
    figures: Figures


@dataclass(frozen=True)
class Month:
    """One month of the trend (clipped to the period)."""

    label: str
    first: date
    last: date
    figures: Figures


@dataclass(frozen=True)
class Ranked:
    """A thématique or motif and its number of solicitation rows."""

    label: str
    count: int
    thematique: str = ""


@dataclass
class HeatCell:
    """Calls of one weekday × hour, local time, and how open the scope is then."""

    calls: int = 0
    #: Calls that arrived while closed (out of hours, holiday or closure).
    closed_calls: int = 0
    #: "open" (every département of the scope open the whole hour), "partial", "closed".
    opening: str = "closed"
    #: 0 (no call) to 4 (the busiest cells): the shade shown.
    level: int = 0


@dataclass
class HeatMap:
    """Calls by weekday (rows, Monday first) × hour (0–23), local time of each département."""

    cells: list[list[HeatCell]]
    total: int = 0
    closed_calls: int = 0
    #: Calls in an hour when no département of the scope has an opening slot.
    outside_slots: int = 0


# --- periods and scope in SQL ------------------------------------------------------------

def _zones(db: Session, codes) -> dict[str, list[str]]:
    """Timezone -> codes of the scope (every département when `codes` is None)."""
    stmt = select(Departement.timezone, Departement.code)
    if codes is not None:
        stmt = stmt.where(Departement.code.in_(list(codes)))
    zones: dict[str, list[str]] = defaultdict(list)
    for tz, code in db.execute(stmt):
        zones[tz].append(code)
    return dict(zones)


def _instant(day: date, tz: str) -> datetime:
    """Local midnight starting `day` in `tz`, as a UTC instant."""
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(UTC)


def _in_period(at_column, code_column, zones: dict[str, list[str]], start: date, end: date):
    """SQL condition: the row's local date in [start, end] in its département's timezone."""
    after = end + timedelta(days=1)
    if not zones:
        return false()
    return or_(*[and_(code_column.in_(codes), at_column >= _instant(start, tz),
                      at_column < _instant(after, tz)) for tz, codes in zones.items()])


def _calls_in(db: Session, start: date, end: date, codes):
    """Zones of the scope and the WHERE clause of its counted calls in the period."""
    zones = _zones(db, codes)
    return zones, and_(Call.test.is_(False), Call.departement_code.is_not(None),
                       _in_period(Call.started_at, Call.departement_code, zones, start, end))


def _aggregates():
    """Columns summed per group: count, waits and talk times (answered and all)."""
    answered = Call.outcome == Outcome.answered
    return (func.count(Call.id),
            func.sum(case((answered, Call.wait_seconds))),
            func.count(case((answered, Call.wait_seconds))),
            func.sum(Call.wait_seconds), func.count(Call.wait_seconds),
            func.sum(case((answered, Call.talk_seconds))),
            func.count(case((answered, Call.talk_seconds))))


def _fold(figures: Figures, outcome: Outcome | None, values) -> None:
    """Add one GROUP BY row (outcome, then the _aggregates columns) to `figures`."""
    n, wa_sum, wa_n, w_sum, w_n, t_sum, t_n = (int(v or 0) for v in values)
    figures.received += n
    if outcome is None:
        figures.unknown += n
    else:
        figures.by_outcome[outcome] = figures.by_outcome.get(outcome, 0) + n
    figures.wait_answered_total += wa_sum
    figures.wait_answered_count += wa_n
    figures.wait_total += w_sum
    figures.wait_count += w_n
    figures.talk_total += t_sum
    figures.talk_count += t_n


# --- public functions --------------------------------------------------------------------

def by_departement(db: Session, *, start: date, end: date, codes=None) -> dict[str, Figures]:
    """Figures of each département of the scope over the period (one GROUP BY)."""
    _, where = _calls_in(db, start, end, codes)
    stmt = (select(Call.departement_code, Call.outcome, *_aggregates())
            .where(where).group_by(Call.departement_code, Call.outcome))
    result: dict[str, Figures] = defaultdict(Figures)
    for code, outcome, *values in db.execute(stmt):
        _fold(result[code], outcome, values)
    return dict(result)


def summary(db: Session, *, start: date, end: date, codes=None) -> Figures:
    """The scope's figures over the period: the sum of its départements'."""
    return total(by_departement(db, start=start, end=end, codes=codes).values())


def total(parts) -> Figures:
    """Several scopes' figures added up."""
    result = Figures()
    for part in parts:
        result.add(part)
    return result


def unattributed_calls(db: Session, *, start: date, end: date) -> int:
    """Calls that never reached a département (hung up or invalid code before), Paris dates:
    counted nationally only, apart from the calls received."""
    return db.scalar(select(func.count(Call.id)).where(
        Call.test.is_(False), Call.departement_code.is_(None),
        Call.started_at >= _instant(start, "Europe/Paris"),
        Call.started_at < _instant(end + timedelta(days=1), "Europe/Paris"))) or 0


def months(start: date, end: date) -> list[tuple[str, date, date]]:
    """(French label, first day, last day) of each month of the period, clipped to it."""
    result, first = [], start
    while first <= end:
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        result.append((f"{MONTHS[first.month - 1]} {first.year}", first,
                       min(following - timedelta(days=1), end)))
        first = following
    return result


def trend(db: Session, *, start: date, end: date, codes=None) -> list[Month]:
    """Figures month by month (local months of each département), in one GROUP BY."""
    spans = months(start, end)
    zones, where = _calls_in(db, start, end, codes)
    branches = [(and_(Call.departement_code.in_(zone_codes),
                      Call.started_at >= _instant(first, tz),
                      Call.started_at < _instant(last + timedelta(days=1), tz)), i)
                for tz, zone_codes in zones.items() for i, (_, first, last) in enumerate(spans)]
    result = [Month(label, first, last, Figures()) for label, first, last in spans]
    if not branches:
        return result
    index = case(*branches, else_=-1)
    stmt = (select(index, Call.outcome, *_aggregates()).where(where)
            .group_by(index, Call.outcome))
    for i, outcome, *values in db.execute(stmt):
        if 0 <= i < len(result):
            _fold(result[i].figures, outcome, values)
    return result


def _solicitations_in(db: Session, start: date, end: date, codes):
    zones = _zones(db, codes)
    return _in_period(Solicitation.occurred_at, Solicitation.departement_code, zones, start, end)


def top_thematiques(db: Session, *, start: date, end: date, codes=None,
                    limit: int = 6) -> list[Ranked]:
    """The thématiques with the most solicitation rows (« À qualifier » included), most first."""
    label = func.coalesce(Thematique.label, TO_QUALIFY)
    n = func.count(Solicitation.id)
    stmt = (select(label, n).select_from(Solicitation)
            .outerjoin(Thematique, Thematique.id == Solicitation.thematique_id)
            .where(_solicitations_in(db, start, end, codes))
            .group_by(label).order_by(n.desc(), label).limit(limit))
    return [Ranked(name, count) for name, count in db.execute(stmt)]


def top_motifs(db: Session, *, start: date, end: date, codes=None, limit: int = 10) -> list[Ranked]:
    """The qualified motifs with the most solicitation rows, most first, with their thématique."""
    n = func.count(Solicitation.id)
    stmt = (select(Thematique.label, Motif.label, n).select_from(Solicitation)
            .join(Motif, Motif.id == Solicitation.motif_id)
            .join(Thematique, Thematique.id == Motif.thematique_id)
            .where(_solicitations_in(db, start, end, codes))
            .group_by(Thematique.label, Motif.label)
            .order_by(n.desc(), Thematique.label, Motif.label).limit(limit))
    return [Ranked(motif, count, thematique) for thematique, motif, count in db.execute(stmt)]


def _offset_segments(tz: str, low: datetime, high: datetime) -> list[tuple[datetime, datetime, int]]:
    """[low, high) cut where the UTC offset of `tz` changes: (from, to, offset in hours)."""
    zone = ZoneInfo(tz)

    def offset(at: datetime) -> int:
        return int(at.astimezone(zone).utcoffset().total_seconds() // 3600)

    segments, begin, current, day = [], low, offset(low), low
    while day < high:  # day by day, then hour by hour within a day whose offset changes
        following = min(day + timedelta(days=1), high)
        if offset(following if following < high else high - timedelta(seconds=1)) != current:
            at = day
            while at < following:
                step = min(at + timedelta(hours=1), following)
                if step < high and offset(step) != current:
                    segments.append((begin, step, current))
                    begin, current = step, offset(step)
                at = step
        day = following
    segments.append((begin, high, current))
    return segments


def _utc_weekday_hour(db: Session):
    """SQL expressions of the UTC weekday (0 = Sunday) and hour of Call.started_at."""
    if db.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", Call.started_at)
        return (cast(func.extract("dow", utc), Integer), cast(func.extract("hour", utc), Integer))
    return (cast(func.strftime("%w", Call.started_at), Integer),
            cast(func.strftime("%H", Call.started_at), Integer))


def slot_coverage(views) -> list[list[str]]:
    """For each weekday × hour: "open" when every view's weekly slots cover the whole hour,
    "closed" when none overlaps it, "partial" otherwise. Views without phone assistance have no
    hours: they are left out (all closed when no view offers phone assistance)."""
    grid = []
    views = [view for view in views if view.phone_assistance]
    for weekday in range(7):
        row = []
        for hour in range(24):
            begin, finish = hour * 60, hour * 60 + 60
            full = some = 0
            for view in views:
                minutes = 0
                for slot in view.slots:
                    if slot.weekday != weekday:
                        continue
                    lo = slot.start.hour * 60 + slot.start.minute
                    hi = slot.end.hour * 60 + slot.end.minute
                    minutes += max(0, min(hi, finish) - max(lo, begin))
                full += minutes >= 60
                some += minutes > 0
            row.append("open" if views and full == len(views) else "partial" if some else "closed")
        grid.append(row)
    return grid


def heat_map(db: Session, *, start: date, end: date, codes=None, views=()) -> HeatMap:
    """Calls by local weekday × hour, with the calls that arrived while closed, and each
    cell's opening state from the weekly slots of `views` (the scope's directory snapshots).

    SQL groups by UTC weekday and hour and by the département's UTC offset (constant between
    two daylight-saving changes, cut into segments here): the local cell follows by arithmetic.
    """
    zones, where = _calls_in(db, start, end, codes)
    branches = []
    for tz, zone_codes in zones.items():
        low, high = _instant(start, tz), _instant(end + timedelta(days=1), tz)
        for begin, finish, offset in _offset_segments(tz, low, high):
            branches.append((and_(Call.departement_code.in_(zone_codes),
                                  Call.started_at >= begin, Call.started_at < finish), offset))
    grid = [[HeatCell() for _ in range(24)] for _ in range(7)]
    coverage = slot_coverage(views)
    for weekday in range(7):
        for hour in range(24):
            grid[weekday][hour].opening = coverage[weekday][hour]
    result = HeatMap(grid)
    if branches:
        offset = case(*branches, else_=0)
        dow, hour = _utc_weekday_hour(db)
        closed = case((Call.outcome == Outcome.out_of_hours, 1), else_=0)
        stmt = (select(offset, dow, hour, closed, func.count(Call.id)).where(where)
                .group_by(offset, dow, hour, closed))
        for off, utc_dow, utc_hour, is_closed, n in db.execute(stmt):
            local = (((int(utc_dow) + 6) % 7) * 24 + int(utc_hour) + int(off)) % 168
            cell = grid[local // 24][local % 24]
            cell.calls += n
            result.total += n
            if is_closed:
                cell.closed_calls += n
                result.closed_calls += n
            if cell.opening == "closed":
                result.outside_slots += n
    busiest = max((c.calls for row in grid for c in row), default=0)
    for row in grid:
        for cell in row:
            cell.level = 0 if not cell.calls else max(1, -(-4 * cell.calls // busiest))
    return result


def comparison(db: Session, *, start: date, end: date, codes=None) -> list[ComparisonRow]:
    """One row per département of the scope (those without calls included), official order."""
    figures = by_departement(db, start=start, end=end, codes=codes)
    stmt = select(Departement.code, Departement.name)
    if codes is not None:
        stmt = stmt.where(Departement.code.in_(list(codes)))
    rows = [ComparisonRow(code, name, figures.get(code, Figures())) for code, name in db.execute(stmt)]
    return official_order(rows, lambda r: r.code)


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard shows for one scope and period."""

    start: date
    end: date
    figures: Figures
    trend: list[Month]
    thematiques: list[Ranked]
    motifs: list[Ranked]
    heat_map: HeatMap
    #: Per-département rows (national scope only; empty otherwise).
    comparison: list[ComparisonRow]
    #: Calls that reached no département (national scope only).
    unattributed: int | None


def dashboard(db: Session, *, start: date, end: date, codes=None, views=()) -> Dashboard:
    """The dashboard of a scope (`codes=None`: national) over [start, end]; `views` are the
    scope's directory snapshots, for the heat map's opening hours."""
    check_period(start, end)
    national = codes is None
    rows = comparison(db, start=start, end=end) if national else []
    figures = (total(r.figures for r in rows) if national
               else summary(db, start=start, end=end, codes=codes))
    return Dashboard(
        start=start, end=end, figures=figures,
        trend=trend(db, start=start, end=end, codes=codes),
        thematiques=top_thematiques(db, start=start, end=end, codes=codes),
        motifs=top_motifs(db, start=start, end=end, codes=codes),
        heat_map=heat_map(db, start=start, end=end, codes=codes, views=views),
        comparison=rows,
        unattributed=unattributed_calls(db, start=start, end=end) if national else None)
