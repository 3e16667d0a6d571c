"""The national team's dashboard: KPIs, trend, heat map and comparison of départements, for a
quarter or any date range; a referent sees their own département's (the menu leads them there,
or to the list of theirs when they have several). Figures come from
tracking.indicators, the one module that computes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from accounts import permissions

from core import db
from directory import operations
from directory.reference import official_order, territories
from tickets import operations as ticket_operations
from tracking import indicators
from tracking.exports import PeriodError, quarter_bounds, quarter_of
from tracking.models import Outcome
from web import policy

bp = Blueprint("dashboard_pages", __name__, url_prefix="/tableau-de-bord")

#: Quarters offered in the selector, the current one first.
QUARTERS_SHOWN = 8
#: Sort keys of the comparison table (query parameter `tri`) -> row key.
SORTS = {
    "code": lambda r: r.code,
    "nom": lambda r: r.name.lower(),
    "recus": lambda r: r.figures.received,
    "decroches": lambda r: r.figures.answered,
    "taux": lambda r: (r.figures.answer_rate is not None, r.figures.answer_rate or 0),
    "attente": lambda r: (r.figures.average_wait_answered is not None,
                          r.figures.average_wait_answered or 0),
    "hors-horaires": lambda r: (r.figures.out_of_hours_share is not None,
                                r.figures.out_of_hours_share or 0),
}
#: Size of the trend chart (SVG user units).
CHART_WIDTH, CHART_HEIGHT, CHART_TOP, CHART_BOTTOM = 640, 240, 20, 200


@dataclass(frozen=True)
class Period:
    """The period asked for: a quarter, or a du/au range; `error` when the input was refused."""

    start: date
    end: date
    quarter: str | None
    error: str | None = None


def _today() -> date:
    return current_app.config["CLOCK"]().date()


def recent_quarters(today: date) -> list[str]:
    """The current quarter and the previous ones, newest first."""
    quarters, day = [], today
    for _ in range(QUARTERS_SHOWN):
        quarters.append(quarter_of(day))
        start, _ = quarter_bounds(quarters[-1])
        day = date.fromordinal(start.toordinal() - 1)
    return quarters


def period_from(args, today: date) -> Period:
    """The period of the query string: `du` and `au` (ISO dates) win over `trimestre`; the
    current quarter when nothing (or something invalid) is given."""
    current = quarter_of(today)
    error = None
    if args.get("du") or args.get("au"):
        try:
            start, end = date.fromisoformat(args.get("du", "")), date.fromisoformat(args.get("au", ""))
            indicators.check_period(start, end)
            return Period(start, end, None)
        except ValueError as exc:
            error = (str(exc) if isinstance(exc, indicators.PeriodTooLong)
                     else "saisissez deux dates valides (jj/mm/aaaa)")
    quarter = args.get("trimestre")
    if quarter:
        try:
            start, end = quarter_bounds(quarter)
            return Period(start, end, quarter_of(start), error)
        except PeriodError as exc:
            error = error or str(exc)
    start, end = quarter_bounds(current)
    return Period(start, end, current, error)


def chart(trend: list[indicators.Month]) -> dict:
    """Geometry of the trend's bar chart (received and answered per month), drawn as SVG."""
    peak = max((m.figures.received for m in trend), default=0)
    scale = peak or 1
    slot = (CHART_WIDTH - 60) / max(len(trend), 1)
    bar = min(28.0, slot / 3)
    groups = []
    for i, month in enumerate(trend):
        x = 50 + i * slot + slot / 2
        bars = []
        for j, (value, kind) in enumerate(((month.figures.received, "recus"),
                                           (month.figures.answered, "decroches"))):
            height = (CHART_BOTTOM - CHART_TOP) * value / scale
            bars.append({"x": round(x - bar + j * bar, 1), "y": round(CHART_BOTTOM - height, 1),
                         "width": round(bar - 2, 1), "height": round(height, 1),
                         "kind": kind, "value": value})
        groups.append({"label": month.label, "x": round(x, 1), "bars": bars})
    ticks = [{"value": round(peak * k / 4), "y": round(CHART_BOTTOM - (CHART_BOTTOM - CHART_TOP)
                                                       * k / 4, 1)} for k in range(5)] if peak else []
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "bottom": CHART_BOTTOM,
            "groups": groups, "ticks": ticks, "peak": peak}


def sorted_rows(rows, key: str, order: str):
    """Comparison rows sorted by a SORTS key, ascending or descending (ties in official order)."""
    if key not in SORTS:
        return rows
    return sorted(rows, key=SORTS[key], reverse=order == "desc")


def _render(*, code: str | None):
    today = _today()
    period = period_from(request.args, today)
    session = db.session()
    views = operations.all_snapshots(session, since=period.start)
    if code is not None:
        views = [v for v in views if v.code == code]
    data = indicators.dashboard(session, start=period.start, end=period.end,
                                codes=None if code is None else [code], views=views)
    tri = request.args.get("tri", "code")
    tri = tri if tri in SORTS else "code"
    ordre = request.args.get("ordre")
    if ordre not in ("asc", "desc"):
        ordre = "asc" if tri in ("code", "nom") else "desc"
    period_args = ({"trimestre": period.quarter} if period.quarter
                   else {"du": period.start.isoformat(), "au": period.end.isoformat()})
    name = territories()[code].name if code else None
    if permissions.sees_every_departement(current_user):
        home = url_for("dashboard_pages.national", **period_args)
    elif len(own_codes()) > 1:  # a referent of several départements: the list of theirs
        home = url_for("dashboard_pages.mine", **period_args)
    else:
        home = None
    # Tickets not taken into account within their working-hour deadline, now (not over the
    # period: a late ticket is a task, not a statistic).
    late_tickets = ticket_operations.count_late(
        session, current_app.config["CLOCK"](), None if code is None else [code])
    return render_template(
        "dashboard/index.html", late_tickets=late_tickets,
        title=f"Tableau de bord — {code} {name}" if code else "Tableau de bord national",
        code=code, name=name, period=period, quarters=recent_quarters(today), data=data,
        chart=chart(data.trend), weekdays=indicators.WEEKDAYS,
        rows=sorted_rows(data.comparison, tri, ordre), tri=tri, ordre=ordre,
        period_args=period_args, outcomes=Outcome, home_link=home)


def own_codes() -> list[str]:
    """The départements a referent answers for, in official order (empty for other roles)."""
    if permissions.sees_every_departement(current_user):
        return []
    return permissions.visible_codes(current_user, official_order(list(territories())))


@bp.get("/")
@policy.allow(policy.every_departement)
def national():
    """The national dashboard, with the comparison of départements."""
    return _render(code=None)


@bp.get("/mes-departements")
@policy.allow(policy.logged_in)
def mine():
    """The menu's « Tableau de bord » for a referent: their département's dashboard, or the list
    of their départements' dashboards when they have several (the national one for admins and
    the national team)."""
    # The period asked for goes along as given: the dashboard checks it and says what is wrong.
    period_args = {k: request.args[k] for k in ("trimestre", "du", "au") if request.args.get(k)}
    if permissions.sees_every_departement(current_user):
        return redirect(url_for("dashboard_pages.national", **period_args))
    codes = own_codes()
    if len(codes) == 1:
        return redirect(url_for("dashboard_pages.departement", code=codes[0], **period_args))
    period = period_from(request.args, _today())
    rows = (indicators.comparison(db.session(), start=period.start, end=period.end, codes=codes)
            if codes else [])
    return render_template("dashboard/mine.html", title="Tableau de bord de mes départements",
                           period=period, rows=rows, period_args=period_args)


@bp.get("/<code>")
@policy.allow(policy.reads_departement)
def departement(code: str):
    """One département's dashboard (its referents may read it)."""
    code = code.upper()
    if code not in territories():
        abort(404)
    return _render(code=code)


@bp.app_template_filter("kpi_int")
def kpi_int(value) -> str:
    """1234 -> "1 234" (narrow no-break space, French style)."""
    return f"{int(value or 0):,}".replace(",", "\u202f")


@bp.app_template_filter("kpi_percent")
def kpi_percent(value) -> str:
    """0.4567 -> "45,7 %"; "—" when undefined."""
    if value is None:
        return "—"
    return f"{value * 100:.1f}".replace(".", ",") + "\u00a0%"


@bp.app_template_filter("kpi_seconds")
def kpi_seconds(value) -> str:
    """75.4 -> "1 min 15 s"; "—" when undefined."""
    if value is None:
        return "—"
    seconds = round(value)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def sort_url(endpoint_args: dict, key: str, current: str, order: str) -> str:
    """The comparison table sorted by `key` (reversing the order when it is the current key)."""
    if key == current:
        new_order = "asc" if order == "desc" else "desc"
    else:
        new_order = "asc" if key in ("code", "nom") else "desc"
    return url_for("dashboard_pages.national", **{**endpoint_args, "tri": key, "ordre": new_order})


@bp.app_context_processor
def _helpers():
    return {"dashboard_sort_url": sort_url}
