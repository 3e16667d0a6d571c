"""« Ce qu'entendront les appelants »: what a call would sound like for a département at a
given local date and time, computed by the same engine as real calls."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectField, TimeField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, NumberRange

from accounts import permissions
from callflows import engine, script
from core import db
from directory import operations
from directory.reference import official_order, territories
from tracking.models import Outcome
from web import policy

bp = Blueprint("preview_pages", __name__)

CALLERS = [SelectChoice("nouveau", "Nouvel appelant"),
           SelectChoice("habitue", "Appelant récent (a déjà appelé ce département)"),
           SelectChoice("masque", "Numéro masqué")]
REFERENTS = [SelectChoice("accept", "Un référent décroche et accepte l'appel"),
             SelectChoice("no-answer", "Personne ne répond"),
             SelectChoice("busy", "Les lignes sont occupées")]


class PreviewForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form that changes nothing

    departement = SelectField("Département", validators=[DataRequired("Choisissez un département.")])
    day = DateField("Date", validators=[InputRequired("Indiquez une date (JJ/MM/AAAA).")])
    at = TimeField("Heure locale du département", validators=[InputRequired("Indiquez une heure.")])
    caller = SelectField("Appelant", choices=CALLERS, default="nouveau")
    thematique = SelectField("Thématique choisie dans le menu")
    referent = SelectField("Côté référent", choices=REFERENTS, default="accept")
    voicemail = IntegerField("Durée du message vocal laissé (secondes, 0 : aucun)", default=20,
                             validators=[NumberRange(0, 600, "Entre 0 et 600 secondes.")])


def _thematique_choices(flow) -> list[SelectChoice]:
    """The keys of the flow's menu of thématiques, with their labels."""
    choices = [SelectChoice("", "Aucun choix (la personne attend)")]
    for step in flow.steps.values():
        if step.get("type") == "menu" and any("label" in o for o in step.get("options", {}).values()):
            choices += [SelectChoice(key, f"{key} : {option['label']}")
                        for key, option in step["options"].items() if "label" in option]
            break
    return choices


@bp.get("/apercu")
@policy.allow(policy.logged_in)
def preview():
    """Pick a département, a date and time and a caller: every sentence heard, what is dialled."""
    flow = current_app.extensions["svi.flow"]
    codes = permissions.visible_codes(current_user, official_order(list(territories())))
    form = PreviewForm(request.args)
    form.departement.choices = [SelectChoice("", "Choisir")] + [
        SelectChoice(c, f"{c} {territories()[c].name}") for c in codes]
    form.thematique.choices = _thematique_choices(flow)
    now = current_app.config["CLOCK"]()
    if "day" not in request.args:
        code = request.args.get("departement", "")
        tz = ZoneInfo(territories()[code].timezone) if code in territories() else ZoneInfo("Europe/Paris")
        local = now.astimezone(tz)
        form.day.data, form.at.data = local.date(), local.time().replace(second=0, microsecond=0)
    outcome = None
    if "day" in request.args and form.validate():
        outcome = _run(flow, form, codes)
    return render_template("preview/preview.html", title="Ce qu'entendront les appelants",
                           form=form, outcome=outcome)


def _run(flow, form: PreviewForm, codes: list[str]):
    code = form.departement.data
    if code not in codes:
        form.departement.errors.append("Département inconnu ou hors de vos départements.")
        return None
    session = db.session()
    view = operations.snapshot(session, code)
    instant = datetime.combine(form.day.data, form.at.data, ZoneInfo(view.timezone))
    cfg = current_app.config
    ctx = engine.Context(now=instant, directory=lambda c: operations.snapshot(session, c),
                         last_departement=code if form.caller.data == "habitue" else None,
                         form_url=cfg["SVI_FORM_URL"], time_limit=cfg["SVI_CALL_TIME_LIMIT"],
                         voicemail_max_seconds=cfg["SVI_VOICEMAIL_MAX_SECONDS"])
    keys = ["1"] if form.caller.data == "habitue" else script.keys_for(code) + ["1"]
    keys.append(form.thematique.data or None)
    played = script.run(flow, ctx, keys, referent=form.referent.data,
                        voicemail_seconds=form.voicemail.data or 0)
    outcome = played.track.get("outcome")
    label = Outcome[outcome].value if outcome in Outcome.__members__ else "appel en cours"
    return {"view": view, "instant": instant, "script": played, "outcome": label}
