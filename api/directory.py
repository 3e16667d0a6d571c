"""`/api/v1/departements`: the routing directory, read by whoever may read a département and
written by admins, through the same rules (directory/rules.py), the same save with its version
check and its audit (directory/settings.py) as the web edit page and the import file."""

from __future__ import annotations

from flask_smorest import Blueprint, abort

from accounts import permissions
from api.fields import (Boolean, Date, Integer, List, Nested, Schema, String, Time, in_range,
                        one_of)
from audit.operations import Actor
from core import db
from directory import operations, rules
from directory import settings as directory_settings
from directory.limits import MAX_LINES
from directory.models import RingStrategy
from directory.reference import official_order
from directory.rules import DirectoryError
from web import policy

blp = Blueprint("api_directory", __name__, url_prefix="/api/v1/departements",
                description="L'annuaire de routage : lecture, et écriture par les administrateurs")

WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


# --- schemas ----------------------------------------------------------------------------------

class Line(Schema):
    number = String(required=True, max_length=40,
                    metadata={"description": "numéro (format national ou E.164)"})
    label = String(load_default="", max_length=80, metadata={"description": "libellé"})


class Slot(Schema):
    weekday = Integer(required=True, validate=in_range(0, 6),
                      metadata={"description": "0 = lundi … 6 = dimanche"})
    start = Time(required=True, metadata={"description": "HH:MM, heure locale"})
    end = Time(required=True, metadata={"description": "HH:MM, heure locale"})


class Closure(Schema):
    start_date = Date(required=True)
    end_date = Date(required=True)
    reason = String(load_default="", max_length=200)


class Opening(Closure):
    start_time = Time(required=True)
    end_time = Time(required=True)


class Settings(Schema):
    """What an admin sets for one département (the edit page's fields)."""

    phone_assistance = Boolean(required=True)
    lines = List(Nested(Line), required=True, max_items=MAX_LINES)
    ring_strategy = String(required=True, validate=one_of([s.name for s in RingStrategy]),
                           metadata={"description": "simultaneous (toutes les lignes à la fois) "
                                                    "ou sequential (l'une après l'autre)"})
    ring_timeout = Integer(required=True, validate=in_range(rules.RING_TIMEOUT_MIN,
                                                            rules.RING_TIMEOUT_MAX))
    voicemail_enabled = Boolean(required=True)
    form_url = String(load_default=None, allow_none=True, max_length=300)
    email = String(load_default=None, allow_none=True, max_length=254)
    slots = List(Nested(Slot), required=True, max_items=70)
    closures = List(Nested(Closure), load_default=list, max_items=500)
    openings = List(Nested(Opening), load_default=list, max_items=500)
    worked_holidays = List(String(max_length=80), load_default=list, max_items=20,
                           metadata={"description": "jours fériés travaillés par le département"})


class SettingsUpdate(Settings):
    version = Integer(required=True, validate=in_range(0, 2**31 - 1),
                      metadata={"description": "la version lue : une écriture faite entre-temps "
                                               "par quelqu'un d'autre est refusée (409)"})


class Departement(Settings):
    code = String()
    name = String()
    timezone = String()
    version = Integer()


class Summary(Schema):
    code = String()
    name = String()
    timezone = String()
    phone_assistance = Boolean()
    lines = Integer(metadata={"description": "nombre de lignes actives"})
    version = Integer()


class Change(Schema):
    field = String()
    before = String()
    after = String()


class Saved(Schema):
    departement = Nested(Departement)
    changes = List(Nested(Change), metadata={"description": "ce qui a changé, champ par champ"})


# --- helpers ----------------------------------------------------------------------------------

def _dump(dept, s: directory_settings.DepartementSettings) -> dict:
    labels = {line.number: line.label or "" for line in dept.lines}
    return {
        "code": dept.code, "name": dept.name, "timezone": dept.timezone, "version": dept.version,
        "phone_assistance": s.phone_assistance,
        "lines": [{"number": n, "label": labels.get(n, "")} for n in s.lines],
        "ring_strategy": s.ring_strategy.name, "ring_timeout": s.ring_timeout,
        "voicemail_enabled": s.voicemail_enabled, "form_url": s.form_url, "email": s.email,
        "slots": [{"weekday": d, "start": a, "end": b} for d, a, b in s.slots],
        "closures": [{"start_date": p.start_date, "end_date": p.end_date, "reason": p.reason}
                     for p in s.closures],
        "openings": [{"start_date": p.start_date, "end_date": p.end_date, "reason": p.reason,
                      "start_time": p.start_time, "end_time": p.end_time} for p in s.openings],
        "worked_holidays": list(s.worked_holidays),
    }


def _departement_or_404(code: str):
    dept = operations.get_departement(db.session(), code.upper())
    if dept is None:
        abort(404, message=f"département inconnu : {code}")
    return dept


def _settings_from(dept, body: dict) -> tuple[directory_settings.DepartementSettings, dict]:
    """The settings a request body describes, checked by the directory's own rules; every
    refusal is reported (422) under the field's path, nothing is written."""
    errors: dict[str, list[str]] = {}

    def check(where: str, parse, *args):
        try:
            return parse(*args)
        except DirectoryError as exc:
            errors.setdefault(where, []).append(str(exc))
            return None

    numbers, labels = [], {}
    for i, line in enumerate(body["lines"]):
        number = check(f"lines.{i}.number", rules.normalize_number, line["number"].strip(),
                       dept.phone_region)
        label = check(f"lines.{i}.label", rules.checked_text,
                      directory_settings.normal_text(line["label"]), "libellé")
        if number:
            numbers.append(number)
            labels[number] = label or ""
    lines = check("lines", rules.check_lines, numbers, dept.phone_region) if not errors else ()
    slots = []
    for i, slot in enumerate(body["slots"]):
        if not slot["start"] < slot["end"]:
            errors.setdefault(f"slots.{i}", []).append("l'heure de fin doit suivre l'heure de début")
        slots.append((slot["weekday"], slot["start"], slot["end"]))
    slots = check("slots", rules.check_slots, slots) or ()
    periods = {"closures": [], "openings": []}
    for kind in periods:
        for i, p in enumerate(body[kind]):
            check(f"{kind}.{i}", rules.check_dates, p["start_date"], p["end_date"])
            reason = check(f"{kind}.{i}.reason", rules.parse_reason,
                           directory_settings.normal_text(p["reason"]))
            hours = (p.get("start_time"), p.get("end_time"))
            if kind == "openings":
                check(f"{kind}.{i}", rules.check_opening_hours, *hours)
            periods[kind].append(rules.Period(p["start_date"], p["end_date"], reason or "", *hours))
    worked = [check(f"worked_holidays.{i}", rules.parse_holiday, name, dept.holiday_subdiv)
              for i, name in enumerate(body["worked_holidays"])]
    form_url = check("form_url", rules.parse_free_text,
                     directory_settings.normal_text(body["form_url"]))
    email = check("email", rules.parse_email, directory_settings.normal_text(body["email"]))
    if errors:
        abort(422, message="l'annuaire n'a pas été modifié : des champs sont invalides",
              errors={"json": errors})
    settings = directory_settings.DepartementSettings(
        code=dept.code, phone_assistance=body["phone_assistance"], lines=lines,
        ring_strategy=RingStrategy[body["ring_strategy"]], ring_timeout=body["ring_timeout"],
        voicemail_enabled=body["voicemail_enabled"], form_url=form_url, email=email,
        slots=tuple(sorted(slots)),
        closures=tuple(sorted(set(periods["closures"]), key=rules.period_key)),
        openings=tuple(sorted(set(periods["openings"]), key=rules.period_key)),
        worked_holidays=tuple(sorted(set(worked))))
    return settings, labels


# --- endpoints --------------------------------------------------------------------------------

@blp.route("")
@blp.response(200, Summary(many=True))
@policy.allow(policy.logged_in)
def list_departements():
    """Les départements que le compte peut lire, dans l'ordre officiel."""
    user = policy.acting_user()
    found = {d.code: d for d in directory_settings.load_all(db.session())
             if permissions.may_read_departement(user, d.code)}
    return [{"code": d.code, "name": d.name, "timezone": d.timezone,
             "phone_assistance": d.phone_assistance, "version": d.version,
             "lines": sum(1 for line in d.lines if line.active)}
            for d in official_order(list(found.values()), code=lambda d: d.code)]


@blp.route("/<code>")
@blp.response(200, Departement)
@policy.allow(policy.reads_departement)
def get_departement(code: str):
    """Tous les réglages d'un département : lignes, horaires, fermetures, jours fériés."""
    dept = _departement_or_404(code)
    return _dump(dept, directory_settings.current(db.session(), dept))


@blp.route("/<code>", methods=["PUT"])
@blp.arguments(SettingsUpdate)
@blp.response(200, Saved)
@policy.allow(policy.edits_departement)
def put_departement(body: dict, code: str):
    """Remplace les réglages d'un département (administrateurs). Mêmes règles et même journal
    que la page de modification ; refusé (409) si le département a changé depuis `version`."""
    session = db.session()
    dept = _departement_or_404(code)
    settings, labels = _settings_from(dept, body)
    try:
        changes = directory_settings.save(session, Actor.api(policy.acting_user()), [settings],
                                          labels={dept.code: labels},
                                          expected_versions={dept.code: body["version"]})
    except directory_settings.VersionConflict as exc:
        db.rollback()
        who = f" par {exc.last_change.actor}" if exc.last_change is not None else ""
        abort(409, message=f"le département {dept.code} a été modifié entre-temps{who} : "
                           "relisez-le et refaites votre modification")
    session.refresh(dept)
    return {"departement": _dump(dept, directory_settings.current(session, dept)),
            "changes": [{"field": field, "before": before, "after": after}
                        for change in changes for field, (before, after) in change.changes.items()]}
