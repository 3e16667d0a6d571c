"""« Ce qu'entendront les appelants »: what a call would sound like for a département at a
given local date and time, computed by the same engine as real calls; and the browser call
simulator, which places test calls through the real signed webhooks."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from flask import (Blueprint, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user
from sqlalchemy import select
from wtforms import (DateField, DateTimeLocalField, IntegerField, SelectField, StringField,
                     TimeField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, NumberRange, Optional, Regexp

from accounts import permissions
from callflows import engine, script
from core import db
from directory import operations
from directory.reference import official_order, territories
from ivr.simulator import Emulator, FlaskTransport, Pause, Referent, Transcript
import prompts
from prompts import overrides as prompt_overrides
from tickets import incidents
from tracking.models import Call, Outcome
from web.forms import Form, plausible_year
from web import policy, scratch

bp = Blueprint("preview_pages", __name__)

CALLERS = [SelectChoice("nouveau", "Nouvel appelant"),
           SelectChoice("habitue", "Appelant récent (a déjà appelé ce département)"),
           SelectChoice("masque", "Numéro masqué")]
REFERENTS = [SelectChoice("accept", "Un référent décroche et accepte l'appel"),
             SelectChoice("no-answer", "Personne ne répond"),
             SelectChoice("busy", "Les lignes sont occupées")]
#: What the caller does when nobody answered (the callback offer), as keypad entries.
AFTER_NO_ANSWER = {"attend": [None], "rappel": ["1"], "autre": ["2", "0199000002", "1"],
                   "message": ["3"]}
AFTERS = [SelectChoice("attend", "Ne tape rien (messagerie vocale, ou formulaire)"),
          SelectChoice("rappel", "Demande à être rappelé au numéro d'où il appelle (1)"),
          SelectChoice("autre", "Indique un autre numéro, 01 99 00 00 02, et le confirme (2)"),
          SelectChoice("message", "Choisit de laisser un message (3)")]
#: The number the previewed caller calls from (ARCEP's range reserved for fiction).
PREVIEW_CALLER = "+33199000001"


class PreviewForm(Form):
    class Meta:
        csrf = False  # a GET form that changes nothing

    departement = SelectField("Département", validators=[DataRequired("Choisissez un département.")])
    day = DateField("Date", validators=[InputRequired("Indiquez une date (JJ/MM/AAAA)."),
                                        plausible_year])
    at = TimeField("Heure locale du département", validators=[InputRequired("Indiquez une heure.")])
    caller = SelectField("Appelant", choices=CALLERS, default="nouveau")
    thematique = SelectField("Thématique choisie dans le menu")
    referent = SelectField("Côté référent", choices=REFERENTS, default="accept")
    after = SelectField("Si personne ne répond, l'appelant…", choices=AFTERS, default="attend")
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


def _speaker(overrides):
    """What a Say sounds like with the admins' overrides: their text, or their recording."""
    def speak(say) -> str:
        text, audio = overrides.resolve(say.prompt, say.params.get("departement"))
        if text is None and audio is None:
            audio = prompts.audio_file(say.prompt)
        if audio:
            return f"(enregistrement « {say.prompt} »)"
        return prompts.render(say.prompt, say.params, template=text)
    return speak


def _run(flow, form: PreviewForm, codes: list[str]):
    code = form.departement.data
    if code not in codes:
        form.departement.errors.append("Département inconnu ou hors de vos départements.")
        return None
    session = db.session()
    view = operations.snapshot(session, code)
    instant = datetime.combine(form.day.data, form.at.data, ZoneInfo(view.timezone))
    cfg = current_app.config
    messages = incidents.active_messages(session, instant)
    ctx = engine.Context(now=instant, directory=lambda c: operations.snapshot(session, c),
                         last_departement=code if form.caller.data == "habitue" else None,
                         form_url=cfg["SVI_FORM_URL"], time_limit=cfg["SVI_CALL_TIME_LIMIT"],
                         voicemail_max_seconds=cfg["SVI_VOICEMAIL_MAX_SECONDS"],
                         caller_number=None if form.caller.data == "masque" else PREVIEW_CALLER,
                         announcements=lambda c: tuple(incidents.messages_for(messages, c)))
    keys = ["1"] if form.caller.data == "habitue" else script.keys_for(code) + ["1"]
    keys.append(form.thematique.data or None)
    keys += AFTER_NO_ANSWER.get(form.after.data, [None])
    played = script.run(flow, ctx, keys, referent=form.referent.data,
                        voicemail_seconds=form.voicemail.data or 0,
                        speak=_speaker(prompt_overrides.load(session)))
    outcome = played.track.get("outcome")
    label = Outcome[outcome].value if outcome in Outcome.__members__ else "appel en cours"
    return {"view": view, "instant": instant, "script": played, "outcome": label}


# --- the browser call simulator ---------------------------------------------------------------

BEHAVIOURS = [SelectChoice("accept", "Décroche et accepte l'appel (touche 1)"),
              SelectChoice("decline", "Messagerie personnelle du référent (n'accepte pas)"),
              SelectChoice("no-answer", "Ne répond pas"), SelectChoice("busy", "Occupé"),
              SelectChoice("caller-hangup", "L'appelant raccroche pendant la sonnerie")]
#: How each line of the emulator's transcript is shown.
LINE_KINDS = (("🔊", "say"), ("🎵", "say"), ("⌨", "input"), ("⌛", "input"), ("☎", "dial"),
              ("⏺", "record"), ("📴", "end"), ("⚠", "error"), ("   ", "referent"))


class SimulatorForm(Form):
    caller = StringField("Numéro de l'appelant", default="+33612345678",
                         validators=[DataRequired("Indiquez un numéro, ou « anonymous ».")])
    at = DateTimeLocalField("Date et heure simulées (heure de Paris)",
                            validators=[Optional(), plausible_year],
                            format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])
    referent = SelectField("Quand une ligne sonne, le référent…", choices=BEHAVIOURS,
                           default="accept")
    voicemail = IntegerField("Durée du message vocal laissé (secondes, 0 : aucun)", default=15,
                             validators=[NumberRange(0, 600, "Entre 0 et 600 secondes.")])


class KeysForm(Form):
    digits = StringField("Touches tapées", validators=[
        Optional(), Regexp(r"^[0-9*#]{0,20}$", message="Touches 0 à 9, * et # uniquement.")])


def _simulations() -> Path:
    return scratch.folder("simulations")


def _load_simulation() -> dict | None:
    """The current user's simulated call, kept in a file named by their session."""
    sim_id = session.get("simulation")
    if not sim_id or not re.fullmatch(r"[0-9a-f]{32}", sim_id):
        return None
    path = _simulations() / f"{sim_id}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("owner") == current_user.id else None


def _save_simulation(data: dict) -> None:
    sim_id = session.get("simulation") or secrets.token_hex(16)
    session["simulation"] = sim_id
    (_simulations() / f"{sim_id}.json").write_text(json.dumps(data, ensure_ascii=False),
                                                   encoding="utf-8")


def _emulator() -> Emulator:
    cfg = current_app.config
    public = cfg["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")
    return Emulator(FlaskTransport(current_app._get_current_object()),
                    auth_token=cfg["TWILIO_AUTH_TOKEN"], public_base=public)


def _lines(transcript) -> list[dict]:
    out = []
    for line in transcript.lines:
        kind = next((k for prefix, k in LINE_KINDS if line.startswith(prefix)), "info")
        text = line[1:].strip() if kind not in ("referent", "info") else line.strip()
        out.append({"kind": kind, "text": text})
    return out


def _progress(data: dict, transcript, pause) -> None:
    data["lines"] += _lines(transcript)
    data["pause"] = asdict(pause) if pause else None
    code = _departement_of(pause)
    if code and not permissions.may_read_departement(current_user, code):
        # A referent tests their own départements: the call stops before any line is shown.
        data["lines"].append({"kind": "error", "text": f"département {code} hors de vos "
                              "départements : l'appel de test s'arrête ici"})
        data["pause"], pause = None, None
    if pause is None and not data.get("ended"):
        _emulator().end(transcript, data["base"], data.get("at"))
        data["ended"] = True


def _departement_of(pause) -> str | None:
    """The département a paused call has reached: its question's URL carries the call's state."""
    if pause is None:
        return None
    values = parse_qs(urlsplit(pause.action or "").query).get("d")
    return values[0].upper() if values else None


@bp.get("/simulateur")
@policy.allow(policy.logged_in)
def simulator():
    """Place a test call through the real, signed webhooks, one question at a time."""
    data = _load_simulation()
    outcome = None
    if data and data.get("ended"):
        call = db.session().scalar(select(Call).where(Call.call_sid == data["base"]["CallSid"]))
        outcome = call.outcome.value if call is not None and call.outcome else "aucune"
    return _simulator_page(call=data, outcome=outcome)


def _simulator_page(*, call=None, outcome=None, form=None, keys=None, status: int = 200):
    """The simulator page: a call's transcript, its forms (with their errors, if any)."""
    return render_template("preview/simulator.html", title="Simulateur d'appel",
                           form=form or SimulatorForm(), keys=keys or KeysForm(), call=call,
                           outcome=outcome,
                           simulated_time=current_app.config["SVI_ALLOW_SIMULATED_TIME"]), status


@bp.post("/simulateur/appeler")
@policy.allow(policy.logged_in)
def simulator_start():
    """Start a new test call (any call in progress is hung up first)."""
    form = SimulatorForm()
    if not form.validate_on_submit():
        return _simulator_page(form=form, status=400)
    _hang_up(_load_simulation())
    at = None
    if form.at.data and current_app.config["SVI_ALLOW_SIMULATED_TIME"]:
        at = form.at.data.replace(tzinfo=ZoneInfo("Europe/Paris")).isoformat()
    transcript, pause = _emulator().begin(caller=form.caller.data.strip(), at=at, test=True)
    data = {"owner": current_user.id, "at": at, "referent": form.referent.data,
            "voicemail": form.voicemail.data or 0, "base": transcript.base, "lines": [],
            "ended": False}
    _progress(data, transcript, pause)
    _save_simulation(data)
    return redirect(url_for("preview_pages.simulator", _anchor="appel"))


@bp.post("/simulateur/touches")
@policy.allow(policy.logged_in)
def simulator_keys():
    """Answer the question the test call is waiting on (no keys: silence)."""
    data = _load_simulation()
    form = KeysForm()
    if data is None or data.get("ended") or not data.get("pause"):
        flash("Aucun appel de test en cours : lancez-en un.", "error")
        return redirect(url_for("preview_pages.simulator"))
    if not form.validate_on_submit():  # told on the field, the call still waiting
        return _simulator_page(call=data, keys=form, status=400)
    pause = Pause(**data["pause"])
    digits = None if "silence" in request.form else (form.digits.data or None)
    transcript, next_pause = _emulator().answer(
        pause, digits,
        referent=Referent(data["referent"]), voicemail_seconds=data["voicemail"])
    _progress(data, transcript, next_pause)
    _save_simulation(data)
    return redirect(url_for("preview_pages.simulator", _anchor="appel"))


@bp.post("/simulateur/raccrocher")
@policy.allow(policy.logged_in)
def simulator_hang_up():
    """The caller hangs up: Twilio's final status callback is sent."""
    data = _load_simulation()
    if data is not None and not data.get("ended"):
        _hang_up(data)
        data["lines"].append({"kind": "end", "text": "l'appelant raccroche"})
        _save_simulation(data)
    return redirect(url_for("preview_pages.simulator", _anchor="appel"))


def _hang_up(data: dict | None) -> None:
    if data is None or data.get("ended"):
        return
    transcript = Transcript(call_sid=data["base"]["CallSid"],
                            elapsed=(data.get("pause") or {}).get("elapsed", 0))
    _emulator().end(transcript, data["base"], data.get("at"))
    data["ended"] = True
