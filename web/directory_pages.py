"""The directory in the browser: overview of the 101 départements now, one département's
settings and its year at a glance. Editing is for admins (see `edit`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import Form as FieldGroup
from wtforms import (BooleanField, DateField, FieldList, FormField, HiddenField,
                     RadioField, SelectField, SelectMultipleField, StringField, TimeField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from accounts import permissions
from audit.operations import Actor
from core import db
from directory import operations, rules
from directory import settings as directory_settings
from directory.limits import MAX_EDITED_PERIODS, MAX_LINES
from directory.reference import territories
from directory.rules import DirectoryError
from directory.schedule import State, availability, calendar_day, holiday_names
from prompts import french
from web.forms import Form
from web import phone, policy

bp = Blueprint("directory_pages", __name__, url_prefix="/annuaire")

OVERSEAS = {"971", "972", "973", "974", "976"}
STATE_FILTERS = {"ouvert": State.open, "ferme": State.closed,
                 "sans-assistance": State.no_phone_assistance}


def _now():
    return current_app.config["CLOCK"]()


def _view_or_404(code: str):
    view = operations.snapshot(db.session(), code)
    if view is None:
        abort(404)
    return view


def describe_now(view, now) -> dict:
    """A département's state now, as the pages show it."""
    result = availability(view, now)
    local = now.astimezone(ZoneInfo(view.timezone))
    detail = ""
    if result.state is State.closed:
        detail = result.reason.value
        if result.holiday_name:
            detail += f" ({result.holiday_name})"
        elif result.closure_reason:
            detail += f" ({result.closure_reason})"
    next_opening = (french.instant(result.next_opening, now, view.timezone)
                    if result.next_opening else "")
    return {"view": view, "state": result.state, "detail": detail, "local": local,
            "next_opening": next_opening}


@bp.get("/")
@policy.allow(policy.logged_in)
def overview():
    """Every département the user may read, with its state now; search and filters."""
    now = _now()
    query = (request.args.get("q") or "").strip()
    state_filter = STATE_FILTERS.get(request.args.get("etat", ""))
    zone = request.args.get("zone", "")
    # Local dates run from UTC-4 (Antilles) to UTC+4 (La Réunion): closures that ended before
    # yesterday (UTC) cannot make any département closed now or delay its next opening.
    views = operations.all_snapshots(db.session(),
                                     since=(now.astimezone(UTC) - timedelta(days=1)).date())
    codes = set(permissions.visible_codes(current_user, [v.code for v in views]))
    rows = []
    for view in views:
        if view.code not in codes:
            continue
        if query and query.lower() not in f"{view.code} {view.name}".lower():
            continue
        if zone == "outre-mer" and view.code not in OVERSEAS:
            continue
        if zone == "metropole" and view.code in OVERSEAS:
            continue
        row = describe_now(view, now)
        if state_filter is not None and row["state"] is not state_filter:
            continue
        rows.append(row)
    return render_template("directory/overview.html", title="Annuaire des départements",
                           rows=rows, total=len(codes), query=query,
                           etat=request.args.get("etat", ""), zone=zone, now=now)


@bp.get("/<code>")
@policy.allow(policy.reads_departement)
def show(code: str):
    """One département: its state now and every setting callers depend on."""
    view = _view_or_404(code)
    now = _now()
    return render_template("directory/show.html", title=f"{view.code} {view.name}",
                           row=describe_now(view, now), view=view,
                           hours=french.weekly_hours(view.slots),
                           may_edit=permissions.may_edit_departement(current_user, view.code))


@bp.get("/<code>/annee")
@policy.allow(policy.reads_departement)
def year(code: str):
    """The next 12 months: holidays by name, closures, exceptional openings, worked holidays."""
    view = _view_or_404(code)
    today = _now().astimezone(ZoneInfo(view.timezone)).date()
    months = []
    first = today.replace(day=1)
    for _ in range(12):
        following = (first + timedelta(days=32)).replace(day=1)
        days = [calendar_day(view, first + timedelta(days=i))
                for i in range((following - first).days)]
        months.append({"first": first, "days": days,
                       "label": f"{french.MONTHS[first.month - 1]} {first.year}",
                       "notable": [d for d in days if d.kind in
                                   ("closure", "opening", "holiday", "worked_holiday")]})
        first = following
    return render_template("directory/year.html", title=f"{view.code} {view.name} : l'année",
                           view=view, months=months, today=today, day_names=french.DAYS)


def territory_name(code: str) -> str:
    """The name of a département code, for pages that only have the code."""
    t = territories().get(code)
    return t.name if t else code


def local_date(day: date) -> str:
    """'lundi 21 décembre 2026'."""
    first = "1er" if day.day == 1 else str(day.day)
    return f"{french.DAYS[day.weekday()]} {first} {french.MONTHS[day.month - 1]} {day.year}"


# --- editing (admins) ---------------------------------------------------------------------

KINDS = [SelectChoice("closure", "Fermeture exceptionnelle"),
         SelectChoice("opening", "Ouverture exceptionnelle")]


class LineForm(FieldGroup):
    number = StringField("Numéro")
    label = StringField("Libellé")


class ExceptionRowForm(FieldGroup):
    remove = BooleanField("Supprimer")
    kind = HiddenField()
    start_date = HiddenField()
    end_date = HiddenField()
    start_time = HiddenField()
    end_time = HiddenField()
    reason = HiddenField()


class EditForm(Form):
    version = HiddenField()
    phone_assistance = BooleanField("Assistance téléphonique proposée")
    form_url = StringField("Adresse du formulaire en ligne")
    email = StringField("Adresse électronique de l'assistance")
    lines = FieldList(FormField(LineForm), min_entries=MAX_LINES, max_entries=MAX_LINES)
    ring_strategy = RadioField("Sonnerie des lignes", choices=[
        SelectChoice("simultaneous", "Toutes en même temps"),
        SelectChoice("sequential", "L'une après l'autre")])
    ring_timeout = StringField("Durée de sonnerie de chaque appel (secondes)")
    voicemail_enabled = BooleanField("Messagerie vocale quand c'est fermé ou que personne ne répond")
    monday = StringField("Lundi")
    tuesday = StringField("Mardi")
    wednesday = StringField("Mercredi")
    thursday = StringField("Jeudi")
    friday = StringField("Vendredi")
    saturday = StringField("Samedi")
    sunday = StringField("Dimanche")
    exceptions = FieldList(FormField(ExceptionRowForm), min_entries=0,
                           max_entries=MAX_EDITED_PERIODS)
    new_kind = SelectField("Type", choices=KINDS)
    new_start = DateField("Du", validators=[Optional()])
    new_end = DateField("Au (inclus)", validators=[Optional()])
    new_start_time = TimeField("De (ouvertures)", validators=[Optional()])
    new_end_time = TimeField("À (ouvertures)", validators=[Optional()])
    new_reason = StringField("Motif, dit aux appelants")
    worked_holidays = SelectMultipleField("Jours fériés travaillés dans ce département")

    DAY_FIELDS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _fill(form: EditForm, settings, labels: dict[str, str], version: int, today: date) -> None:
    """Put a département's current settings into the form (periods ended before `today` are
    not shown: they change nothing any more, and they are kept as they are)."""
    form.version.data = str(version)
    form.phone_assistance.data = settings.phone_assistance
    form.form_url.data = settings.form_url or ""
    form.email.data = settings.email or ""
    for entry, number in zip(form.lines.entries, list(settings.lines)):
        entry.form.number.data = phone(number)
        entry.form.label.data = labels.get(number, "")
    form.ring_strategy.data = settings.ring_strategy.name
    form.ring_timeout.data = str(settings.ring_timeout)
    form.voicemail_enabled.data = settings.voicemail_enabled
    for day, name in enumerate(EditForm.DAY_FIELDS):
        getattr(form, name).data = " ".join(rules.format_interval(start, end)
                                            for wd, start, end in settings.slots if wd == day)
    while form.exceptions.entries:
        form.exceptions.pop_entry()
    for kind, p in _edited_periods(settings, today):
        form.exceptions.append_entry({
            "kind": kind, "start_date": p.start_date.isoformat(),
            "end_date": p.end_date.isoformat(),
            "start_time": p.start_time.strftime("%H:%M") if p.start_time else "",
            "end_time": p.end_time.strftime("%H:%M") if p.end_time else "",
            "reason": p.reason})
    form.worked_holidays.data = list(settings.worked_holidays)


def _read(form: EditForm, current, region: str, subdiv, today: date
          ) -> tuple[object | None, dict]:
    """The settings the form describes, validated by the directory's own rules; each refused
    value is told on its field. Returns (settings or None, labels by number). Periods ended
    before `today` are not in the form: they are taken from `current` unchanged."""
    code = current.code
    failed = False

    def check(field, parse, *args):
        nonlocal failed
        try:
            return parse(*args)
        except DirectoryError as exc:
            field.errors = list(field.errors) + [_sentence(str(exc))]
            failed = True
            return None

    numbers, labels = [], {}
    for entry in form.lines.entries:
        raw = (entry.form.number.data or "").strip()
        if raw:
            number = check(entry.form.number, rules.normalize_number, raw, region)
            label = check(entry.form.label, rules.checked_text,
                          (entry.form.label.data or "").strip()[:80], "libellé")
            if number:
                numbers.append(number)
                labels[number] = label or ""
    lines = check(form.lines, rules.check_lines, numbers, region) if not failed else ()
    slots = []
    for day, name in enumerate(EditForm.DAY_FIELDS):
        field = getattr(form, name)
        intervals = [check(field, rules.parse_interval, part) for part in (field.data or "").split()]
        if all(intervals):
            slots += check(field, rules.check_slots, [(day, *i) for i in intervals]) or ()
    shown = set(_edited_periods(current, today))
    periods = {kind: [p for p in found if (kind, p) not in shown]
               for kind, found in (("closure", current.closures), ("opening", current.openings))}
    for entry in form.exceptions.entries:
        if entry.form.remove.data:
            continue
        data = entry.form
        try:
            periods[data.kind.data].append(rules.Period(
                rules.parse_date(data.start_date.data), rules.parse_date(data.end_date.data),
                data.reason.data or "", _time(data.start_time.data), _time(data.end_time.data)))
        except (DirectoryError, KeyError, ValueError):
            form.exceptions.errors = ["Une période existante est illisible : rechargez la page."]
            failed = True
    if form.new_start.data or form.new_end.data or (form.new_reason.data or "").strip():
        start = form.new_start.data
        end = form.new_end.data or start
        if start is None:
            form.new_start.errors = list(form.new_start.errors) + ["Indiquez la date de début."]
            failed = True
        else:
            opening = form.new_kind.data == "opening"
            if check(form.new_end, rules.check_dates, start, end) is None and not form.new_end.errors:
                reason = check(form.new_reason, rules.parse_reason, form.new_reason.data or "")
                hours = (form.new_start_time.data, form.new_end_time.data) if opening else (None, None)
                if opening:
                    check(form.new_start_time, rules.check_opening_hours, *hours)
                if reason is not None and not form.new_start_time.errors:
                    periods[form.new_kind.data].append(rules.Period(start, end, reason, *hours))
    values = dict(
        phone_assistance=bool(form.phone_assistance.data),
        lines=lines,
        ring_strategy=check(form.ring_strategy, rules.parse_ring_strategy,
                            {"simultaneous": "simultanée", "sequential": "successive"}.get(
                                form.ring_strategy.data or "", form.ring_strategy.data or "")),
        ring_timeout=check(form.ring_timeout, rules.parse_ring_timeout,
                           (form.ring_timeout.data or "").strip()),
        voicemail_enabled=bool(form.voicemail_enabled.data),
        form_url=check(form.form_url, rules.parse_free_text, (form.form_url.data or "").strip()),
        email=check(form.email, rules.parse_email, (form.email.data or "").strip()),
        slots=tuple(sorted(slots)),
        closures=tuple(sorted(set(periods["closure"]), key=rules.period_key)),
        openings=tuple(sorted(set(periods["opening"]), key=rules.period_key)),
        worked_holidays=tuple(sorted(set(
            check(form.worked_holidays, rules.parse_holiday, name, subdiv) or ""
            for name in form.worked_holidays.data or []) - {""})),
    )
    if failed:
        return None, labels
    return directory_settings.DepartementSettings(code=code, **values), labels


def _edited_periods(settings, today: date) -> list[tuple[str, object]]:
    """The periods an edit page shows: not over yet, the first MAX_EDITED_PERIODS by date; the
    others are kept as they are when the page is saved."""
    found = [(kind, p) for kind, periods in (("closure", settings.closures),
                                             ("opening", settings.openings))
             for p in periods if p.end_date >= today]
    found.sort(key=lambda item: rules.period_key(item[1]))
    return found[:MAX_EDITED_PERIODS]


def _int(text: str | None) -> int:
    return int(text) if (text or "").isdecimal() else -1


def _time(text: str | None):
    return datetime.strptime(text, "%H:%M").time() if text else None


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


@bp.route("/<code>/modifier", methods=["GET", "POST"])
@policy.allow(policy.edits_departement)
def edit(code: str):
    """Edit every setting of a département; the second of two concurrent saves is refused."""
    session = db.session()
    dept = operations.get_departement(session, code)
    if dept is None:
        abort(404)
    current = directory_settings.current(session, dept)
    today = _now().astimezone(ZoneInfo(dept.timezone)).date()
    labels = {line.number: line.label or "" for line in dept.lines}
    form = EditForm()
    names = sorted(set(holiday_names(dept.holiday_subdiv).values()))
    form.worked_holidays.choices = [SelectChoice(n, n) for n in names]
    national = operations.national_worked_holidays(session)
    conflict = None
    if request.method == "GET":
        _fill(form, current, labels, dept.version, today)
    elif form.validate_on_submit():
        settings, new_labels = _read(form, current, dept.phone_region, dept.holiday_subdiv, today)
        if settings is not None:
            try:
                changed = directory_settings.save(
                    session, Actor.user(current_user), [settings],
                    labels={dept.code: new_labels},
                    expected_versions={dept.code: _int(form.version.data)})
            except directory_settings.VersionConflict as exc:
                db.rollback()
                conflict = exc.last_change or False
            else:
                flash("Modifications enregistrées." if changed else "Aucune modification.",
                      "success" if changed else "info")
                return redirect(url_for("directory_pages.show", code=dept.code))
    status = 409 if conflict is not None else (400 if request.method == "POST" else 200)
    return render_template("directory/edit.html", title=f"Modifier {dept.code} {dept.name}",
                           form=form, dept=dept, national=national, conflict=conflict,
                           paris=ZoneInfo("Europe/Paris")), status
