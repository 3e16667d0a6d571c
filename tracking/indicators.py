"""The indicators of the national team's dashboard, computed in SQL (GROUP BY), never row by row.

One module for every figure: the dashboard, the API and whoever else shows a KPI call these
functions, so they cannot disagree. The workbook's « Résultats » sheet must stay live formulas
(rows a referent adds by hand are counted when the file is opened), so it cannot call them: it
translates this module's definitions into COUNTIFS (`CALL_KPIS`, `RATE_EXCLUDED`, the labels
below; tracking/workbook.py), and tests recalculate it in LibreOffice and compare it figure by
figure with these functions (tests/test_workbook_indicators.py). The definitions:

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

from sqlalchemy import Integer, and_, case, cast, false, func, literal_column, select, text, union_all
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


# --- definitions -------------------------------------------------------------------------

#: The outcomes counted in the call indicators, in the order the workbook shows them, with the
#: label the workbook and the API give them.
CALL_KPIS: dict[Outcome, str] = {
    Outcome.answered: "Appels décrochés", Outcome.out_of_hours: "Appels hors horaires",
    Outcome.no_phone_assistance: "Pas d'assistance téléphonique",
    Outcome.abandoned: "Abandons dans le menu", Outcome.no_answer: "Personne n'a répondu",
    Outcome.voicemail: "Messages vocaux laissés",
    # The caller heard the technical apology: not an abandon, a failure of the service.
    Outcome.error: "Erreurs techniques"}
RECEIVED_LABEL = "Appels reçus"
RATE_LABEL = "Taux de décroché"
#: Calls taken out of the answer rate's base: nobody could have answered them.
RATE_EXCLUDED = (Outcome.out_of_hours, Outcome.no_phone_assistance)
RATE_DEFINITION = ("Taux de décroché = appels décrochés / (appels reçus − hors horaires − pas "
                   "d'assistance téléphonique)")


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
        return self.received - sum(self.count(outcome) for outcome in RATE_EXCLUDED)

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
#
# A period is a range of local dates: each timezone of the scope has its own UTC range. Every
# statement below is a UNION ALL of one SELECT per timezone, each over its départements and
# its range: what an index on (département, instant) seeks, and reads alone when it holds the
# columns summed (tracking/models.py). Not one WHERE with an OR of one range per timezone:
# SQLite then collects the row ids of every branch and reads each row from the table, and a
# CASE per row to tell the timezones apart costs as much as the sums themselves.

def _zones(db: Session, codes) -> dict[str, list[str]]:
    """Timezone -> codes of the scope (every département when `codes` is None).

    Called before every statement below: on PostgreSQL, it also has them planned for their own
    values. psycopg prepares a statement once a connection has run it 5 times, and PostgreSQL
    may then keep one plan for any values (a "generic plan"): not knowing how many rows the
    period holds, it walked a quarter's rows through the table instead of the index, 0.4 s
    instead of 0.05 s a statement (bench/tracking.py).
    """
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
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


def _counted_calls(tz: str, codes: list[str], start: date, end: date):
    """WHERE clause of the counted calls of `codes` (départements of the timezone `tz`) whose
    local date is in [start, end]: not a test call, reached one of these départements."""
    return and_(Call.departement_code.in_(codes),
                Call.started_at >= _instant(start, tz),
                Call.started_at < _instant(end + timedelta(days=1), tz),
                Call.test.is_(False))


def _union(selects: list):
    """One statement for the SELECTs of every timezone."""
    return selects[0] if len(selects) == 1 else union_all(*selects)


def _constant(value: int):
    """An integer written in the SQL: a column of a UNION ALL branch never grouped by."""
    return literal_column(str(int(value)), Integer)


def _aggregates():
    """Columns summed per group: count, waits and talk times (answered and all)."""
    answered = Call.outcome == Outcome.answered
    return (func.count(),
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
    selects = [select(Call.departement_code, Call.outcome, *_aggregates())
               .where(_counted_calls(tz, zone_codes, start, end))
               .group_by(Call.departement_code, Call.outcome)
               for tz, zone_codes in _zones(db, codes).items()]
    result: dict[str, Figures] = defaultdict(Figures)
    if selects:
        for code, outcome, *values in db.execute(_union(selects)):
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


def _month_index(tz: str, spans):
    """SQL: the index in `spans` (months()) of the local month in `tz` of a call of the
    period (an int for a period within one month)."""
    if len(spans) < 2:
        return _constant(0)
    return case(*[(Call.started_at >= _instant(first, tz), i)
                  for i, (_, first, _) in reversed(list(enumerate(spans))) if i > 0], else_=0)


def _by_month(db: Session, start: date, end: date, codes, per_departement: bool):
    """Rows (département or None, month index, outcome, *_aggregates) of the period."""
    spans = months(start, end)
    selects = []
    for tz, zone_codes in _zones(db, codes).items():
        index = _month_index(tz, spans)
        grouped = ([Call.departement_code] if per_departement else []) + (
            [index] if len(spans) > 1 else [])
        selects.append(select(Call.departement_code if per_departement else _constant(0),
                              index, Call.outcome, *_aggregates())
                       .where(_counted_calls(tz, zone_codes, start, end))
                       .group_by(*grouped, Call.outcome))
    return db.execute(_union(selects)) if selects else []


def trend(db: Session, *, start: date, end: date, codes=None) -> list[Month]:
    """Figures month by month (local months of each département), in one GROUP BY."""
    result = [Month(label, first, last, Figures()) for label, first, last in months(start, end)]
    for _, i, outcome, *values in _by_month(db, start, end, codes, per_departement=False):
        if 0 <= i < len(result):
            _fold(result[i].figures, outcome, values)
    return result


def _departements_and_months(db: Session, *, start: date, end: date, codes=None
                             ) -> tuple[dict[str, Figures], list[Month]]:
    """by_departement() and trend() from one GROUP BY (département, month, outcome): what the
    dashboard shows, for one read of the period's calls instead of two."""
    per_code: dict[str, Figures] = defaultdict(Figures)
    trend_ = [Month(label, first, last, Figures()) for label, first, last in months(start, end)]
    for code, i, outcome, *values in _by_month(db, start, end, codes, per_departement=True):
        _fold(per_code[code], outcome, values)
        if 0 <= i < len(trend_):
            _fold(trend_[i].figures, outcome, values)
    return dict(per_code), trend_


def _solicitation_counts(db: Session, start: date, end: date, codes, column):
    """Subquery (id, n): solicitation rows of the period per value of `column`."""
    selects = [select(column.label("id"), func.count().label("n"))
               .where(Solicitation.departement_code.in_(zone_codes),
                      Solicitation.occurred_at >= _instant(start, tz),
                      Solicitation.occurred_at < _instant(end + timedelta(days=1), tz))
               .group_by(column)
               for tz, zone_codes in _zones(db, codes).items()]
    if not selects:  # an empty scope: no row
        selects = [select(column.label("id"), func.count().label("n")).where(false())
                   .group_by(column)]
    return _union(selects).subquery()


def top_thematiques(db: Session, *, start: date, end: date, codes=None,
                    limit: int = 6) -> list[Ranked]:
    """The thématiques with the most solicitation rows (« À qualifier » included), most first."""
    counts = _solicitation_counts(db, start, end, codes, Solicitation.thematique_id)
    label = func.coalesce(Thematique.label, TO_QUALIFY)
    n = func.sum(counts.c.n)
    stmt = (select(label, n).select_from(counts)
            .outerjoin(Thematique, Thematique.id == counts.c.id)
            .group_by(label).order_by(n.desc(), label).limit(limit))
    return [Ranked(name, int(count)) for name, count in db.execute(stmt)]


def top_motifs(db: Session, *, start: date, end: date, codes=None, limit: int = 10) -> list[Ranked]:
    """The qualified motifs with the most solicitation rows, most first, with their thématique."""
    counts = _solicitation_counts(db, start, end, codes, Solicitation.motif_id)
    n = func.sum(counts.c.n)
    stmt = (select(Thematique.label, Motif.label, n).select_from(counts)
            .join(Motif, Motif.id == counts.c.id)
            .join(Thematique, Thematique.id == Motif.thematique_id)
            .group_by(Thematique.label, Motif.label)
            .order_by(n.desc(), Thematique.label, Motif.label).limit(limit))
    return [Ranked(motif, int(count), thematique) for thematique, motif, count in db.execute(stmt)]


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


def _local_hour_of_week(db: Session, tz: str, start: date, end: date):
    """SQL: the local hour of the week in `tz` (0 = Monday 00:00 to 167) of a call of the
    period. From the hours since the epoch (a Thursday: 72 hours past a Monday), plus the UTC
    offset, constant between two daylight-saving changes (a CASE on the instant when the
    period holds one): one conversion of the instant per call, not one per field."""
    if db.get_bind().dialect.name == "postgresql":
        hours = cast(func.floor(func.extract("epoch", Call.started_at) / 3600), Integer)
    else:
        hours = cast(func.strftime("%s", Call.started_at), Integer) // 3600
    segments = _offset_segments(tz, _instant(start, tz), _instant(end + timedelta(days=1), tz))
    if len(segments) == 1:
        local = hours + segments[0][2]
    else:
        local = case(*[(Call.started_at < finish, hours + offset)
                       for _, finish, offset in segments[:-1]], else_=hours + segments[-1][2])
    return (local + 72) % 168


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

    SQL groups each timezone's calls by local hour of the week (_local_hour_of_week)."""
    grid = [[HeatCell() for _ in range(24)] for _ in range(7)]
    coverage = slot_coverage(views)
    for weekday in range(7):
        for hour in range(24):
            grid[weekday][hour].opening = coverage[weekday][hour]
    result = HeatMap(grid)
    closed = case((Call.outcome == Outcome.out_of_hours, 1), else_=0)
    selects = []
    for tz, zone_codes in _zones(db, codes).items():
        local = _local_hour_of_week(db, tz, start, end)
        selects.append(select(local, closed, func.count())
                       .where(_counted_calls(tz, zone_codes, start, end))
                       .group_by(local, closed))
    for local, is_closed, n in (db.execute(_union(selects)) if selects else []):
        cell = grid[int(local) // 24][int(local) % 24]
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
    return _comparison(db, by_departement(db, start=start, end=end, codes=codes), codes)


def _comparison(db: Session, figures: dict[str, Figures], codes) -> list[ComparisonRow]:
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
    per_code, months_ = _departements_and_months(db, start=start, end=end, codes=codes)
    rows = _comparison(db, per_code, None) if national else []
    return Dashboard(
        start=start, end=end, figures=total(per_code.values()), trend=months_,
        thematiques=top_thematiques(db, start=start, end=end, codes=codes),
        motifs=top_motifs(db, start=start, end=end, codes=codes),
        heat_map=heat_map(db, start=start, end=end, codes=codes, views=views),
        comparison=rows,
        unattributed=unattributed_calls(db, start=start, end=end) if national else None)
