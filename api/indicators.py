"""`/api/v1/indicators`: the dashboard's figures, computed by the one module that computes
them (tracking/indicators.py), so that the API, the dashboard and the workbooks agree."""

from __future__ import annotations

from flask_smorest import Blueprint, abort

from accounts import permissions
from api.fields import Date, Float, Integer, List, Nested, Schema, String
from core import db
from directory import operations
from directory.reference import territories
from tracking import indicators
from tracking.exports import PeriodError, quarter_bounds, quarter_of
from tracking.models import Outcome
from web import policy

blp = Blueprint("api_indicators", __name__, url_prefix="/api/v1/indicators",
                description="Les indicateurs du tableau de bord")


class Query(Schema):
    quarter = String(max_length=7, metadata={"description": "trimestre, ex. 2026-Q4 (par défaut "
                                                            "le trimestre en cours)"})
    start = Date(metadata={"description": "du (inclus) ; avec `end`, remplace `quarter`"})
    end = Date(metadata={"description": "au (inclus)"})
    departement = String(max_length=3, metadata={"description": "un département ; sans, national "
                                                                "(administrateurs et équipe "
                                                                "nationale)"})


class OutcomeCount(Schema):
    outcome = String()
    label = String(metadata={"description": "l'issue en français"})
    count = Integer()


class FiguresOut(Schema):
    received = Integer(metadata={"description": "appels reçus"})
    answered = Integer(metadata={"description": "appels décrochés"})
    rate_base = Integer(metadata={"description": "reçus − hors horaires − sans assistance "
                                                 "téléphonique"})
    answer_rate = Float(allow_none=True, metadata={"description": "décrochés / rate_base"})
    out_of_hours_share = Float(allow_none=True)
    average_wait_answered = Float(allow_none=True, metadata={"description": "secondes"})
    average_wait = Float(allow_none=True)
    average_talk = Float(allow_none=True)
    unknown = Integer(metadata={"description": "appels en cours ou d'issue inconnue"})
    by_outcome = List(Nested(OutcomeCount), metadata={"description": "par issue"})


class MonthOut(Schema):
    label = String()
    first = Date()
    last = Date()
    figures = Nested(FiguresOut)


class RankedOut(Schema):
    label = String()
    thematique = String()
    count = Integer()


class RowOut(Schema):
    code = String()
    name = String()
    figures = Nested(FiguresOut)


class HeatOut(Schema):
    weekdays = List(String())
    calls = List(List(Integer()), metadata={"description": "jour (lundi d'abord) × heure locale"})
    closed_calls = List(List(Integer()))
    total = Integer()
    closed_total = Integer()


class Indicators(Schema):
    start = Date()
    end = Date()
    quarter = String(allow_none=True)
    departement = String(allow_none=True)
    figures = Nested(FiguresOut)
    trend = List(Nested(MonthOut))
    thematiques = List(Nested(RankedOut))
    motifs = List(Nested(RankedOut))
    heat_map = Nested(HeatOut)
    comparison = List(Nested(RowOut), metadata={"description": "par département (national)"})
    unattributed = Integer(allow_none=True, metadata={"description": "appels sans département"})


def figures(f: indicators.Figures) -> dict:
    """A Figures as JSON, every value of the dashboard."""
    return {"received": f.received, "answered": f.answered, "rate_base": f.rate_base,
            "answer_rate": f.answer_rate, "out_of_hours_share": f.out_of_hours_share,
            "average_wait_answered": f.average_wait_answered, "average_wait": f.average_wait,
            "average_talk": f.average_talk, "unknown": f.unknown,
            "by_outcome": [{"outcome": o.name, "label": o.value, "count": f.count(o)}
                           for o in Outcome]}


@blp.route("")
@blp.arguments(Query, location="query", as_kwargs=True)
@blp.response(200, Indicators)
@policy.allow(policy.logged_in)
def get_indicators(quarter=None, start=None, end=None, departement=None):
    """Les chiffres du tableau de bord pour un trimestre ou une période, nationaux ou d'un
    département."""
    user = policy.acting_user()
    if (start is None) != (end is None):
        abort(422, errors={"query": {"start" if start is None else "end":
                                     ["donnez `start` et `end` ensemble"]}})
    if start is not None:
        try:
            indicators.check_period(start, end)
        except indicators.PeriodTooLong as exc:
            abort(422, errors={"query": {"end": [str(exc)]}})
        quarter = None
    else:
        try:
            start, end = quarter_bounds(quarter or quarter_of(_today()))
        except PeriodError as exc:
            abort(422, errors={"query": {"quarter": [str(exc)]}})
        quarter = quarter_of(start)
    code = departement.strip().upper() if departement else None
    if code is not None and code not in territories():
        abort(422, errors={"query": {"departement": [f"département inconnu : {code}"]}})
    if code is None and not permissions.sees_every_departement(user):
        abort(403, message="les chiffres nationaux sont réservés aux administrateurs et à "
                           "l'équipe nationale : précisez `departement`")
    if code is not None and not permissions.may_read_departement(user, code):
        abort(403, message=f"votre compte n'a pas accès au département {code}")
    session = db.session()
    views = [v for v in operations.all_snapshots(session, since=start)
             if code is None or v.code == code]
    data = indicators.dashboard(session, start=start, end=end,
                                codes=None if code is None else [code], views=views)
    heat = data.heat_map
    return {
        "start": start, "end": end, "quarter": quarter, "departement": code,
        "figures": figures(data.figures),
        "trend": [{"label": m.label, "first": m.first, "last": m.last,
                   "figures": figures(m.figures)} for m in data.trend],
        "thematiques": [{"label": r.label, "thematique": r.thematique or r.label,
                         "count": r.count} for r in data.thematiques],
        "motifs": [{"label": r.label, "thematique": r.thematique, "count": r.count}
                   for r in data.motifs],
        "heat_map": {"weekdays": list(indicators.WEEKDAYS),
                     "calls": [[c.calls for c in row] for row in heat.cells],
                     "closed_calls": [[c.closed_calls for c in row] for row in heat.cells],
                     "total": heat.total, "closed_total": heat.closed_calls},
        "comparison": [{"code": r.code, "name": r.name, "figures": figures(r.figures)}
                       for r in data.comparison],
        "unattributed": data.unattributed,
    }


def _today():
    from flask import current_app
    return current_app.config["CLOCK"]().date()
