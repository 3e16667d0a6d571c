"""Webhook handlers: Twilio parameters in, engine and tracking called, TwiML text out.

Rules: reading the directory may fail (the caller then hears an apology and the form);
recording the call may fail too, but then the caller still gets the flow's answer and the
failure is logged — tracking never drops a caller.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from email.utils import parsedate_to_datetime

from flask import current_app, request, url_for

from callflows import engine
from callflows.actions import CallState, Hangup, Say
from core import db
from core.privacy import caller_hash, mask_number
from directory import cache as directory_cache
from ivr import state as url_state
from ivr.twiml import Renderer, apology
from prompts import french
from tracking import operations as tracking

log = logging.getLogger("svi.ivr")


# -- request helpers ----------------------------------------------------------------------------
def _now():
    at = request.args.get("at")
    if at and current_app.config["SVI_ALLOW_SIMULATED_TIME"]:
        return url_state.parse_instant(at)
    return current_app.config["CLOCK"]()


def _event_time(default):
    """Twilio's own timestamp of a callback when given (RFC 2822), else `default`."""
    raw = request.form.get("Timestamp")
    if raw:
        try:
            return parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            pass
    return default


def _int(name: str) -> int | None:
    value = request.form.get(name, "")
    return int(value) if value.isdigit() else None


def _parent_sid() -> str:
    """CallSid of the caller's call: in the URL on referent-side webhooks, else the request's."""
    return request.args.get("c") or request.form.get("ParentCallSid") or request.form.get("CallSid", "")


def renderer() -> Renderer:
    """A TwiML renderer whose URLs are absolute, public and carry the simulated time if any."""
    cfg = current_app.config
    base, keep_at, parent_sid = cfg["PUBLIC_BASE_URL"], request.args.get("at"), _parent_sid()

    def url(endpoint: str, state: CallState | None = None, **values) -> str:
        if state is not None:
            values.update(url_state.encode(state))
        if endpoint in ("ivr.whisper", "ivr.whisper_result", "ivr.leg_status") and parent_sid:
            values["c"] = parent_sid
        if keep_at and endpoint != "audio":
            values["at"] = keep_at
        if endpoint == "audio":
            endpoint = "prompt_audio"
        if base:
            return base + url_for(endpoint, **values)
        return url_for(endpoint, _external=True, **values)

    # `c` only reaches whisper URLs, which the renderer never memoizes: not part of the context.
    return Renderer(url=url, voice=cfg["SVI_VOICE"], language=cfg["SVI_LANGUAGE"],
                    caller_id=cfg["SVI_CALLER_ID"] or None,
                    context=(base or request.host_url, keep_at))


def _form_url() -> str:
    return french.spoken_address(current_app.config["SVI_FORM_URL"])


def _context(now, last_departement=None, directory_version=None) -> engine.Context:
    cfg = current_app.config
    lookup = current_app.extensions["svi.directory_cache"].lookup(db.session,
                                                                   version=directory_version)
    return engine.Context(now=now, directory=lookup,
                          last_departement=last_departement, form_url=cfg["SVI_FORM_URL"],
                          time_limit=cfg["SVI_CALL_TIME_LIMIT"],
                          voicemail_max_seconds=cfg["SVI_VOICEMAIL_MAX_SECONDS"])


def _flow():
    return current_app.extensions["svi.flow"]


def _safely_track(what: str, fn) -> None:
    """Run tracking writes and commit; on failure log and roll back, never raise."""
    try:
        fn()
        db.commit()
    except Exception:
        db.rollback()
        log.exception("tracking failed (%s) for call %s", what, request.form.get("CallSid", "?"))


def answer_or_apologize(handler):
    """Run a webhook handler; any failure becomes an apology in valid TwiML."""
    try:
        return handler()
    except Exception:
        db.rollback()
        log.exception("webhook %s failed for call %s", request.path,
                      request.form.get("CallSid", "?"))
        return apology(renderer(), _form_url())


# -- webhooks ---------------------------------------------------------------------------------
def incoming_call() -> str:
    """POST /ivr/voice: a new call (or Twilio retrying the first request).

    The hot path of every call: two indexed reads and one two-row transaction on the thread's
    hot connection, no ORM session (unless the directory snapshot or the general path needs
    one); the call is committed before Twilio gets its answer."""
    now, form, cfg = _now(), request.form, current_app.config
    sid, caller, hash_key = form.get("CallSid", ""), form.get("From"), cfg["CALLER_HASH_KEY"]
    since = now - timedelta(days=cfg["SVI_RETURNING_CALLER_DAYS"])
    last, version = db.on_hot_connection(lambda conn: (
        tracking.last_departement(conn, caller_hash(caller, hash_key), call_sid=sid, since=since),
        directory_cache.read_version(conn)))
    result = engine.start(_flow(), _context(now, last, version))
    body = renderer().response(result.actions)
    log.info("incoming call %s from %s", sid, mask_number(caller))
    _safely_track("incoming", lambda: record_first_webhook(now, result.track, _flow().start))
    return body


def record_first_webhook(now, track: dict, event_step: str) -> None:
    """Record the call of this first webhook and its event: one transaction on the hot
    connection, or through the ORM when the CallSid is already stored or the flow said more."""
    form = request.form
    sid = form.get("CallSid", "")
    first = dict(caller=form.get("From"), called=form.get("To"), at=now,
                 hash_key=current_app.config["CALLER_HASH_KEY"], track=track,
                 event=tracking.event_data(form), event_step=event_step)
    if not db.on_hot_connection(lambda conn: tracking.record_incoming_call(conn, sid, **first)):
        tracking.record_first_webhook(db.session(), sid, **first)


def step_result() -> str:
    """POST /ivr/step: the result of a Gather, Dial or Record of the step named in the URL."""
    now, form, session = _now(), request.form, db.session()
    state = url_state.decode(request.args)
    accepted = False
    if form.get("DialCallStatus"):
        accepted = tracking.leg_accepted(session, form.get("DialCallSid"))
    inp = engine.Input(digits=form.get("Digits") or None, dial_status=form.get("DialCallStatus"),
                       dial_accepted=accepted, recording_url=form.get("RecordingUrl"),
                       recording_seconds=_int("RecordingDuration"))
    result = engine.resume(_flow(), state, inp, _context(now))
    body = renderer().response(result.actions)

    def track():
        call = tracking.get_or_create_call(session, form.get("CallSid", ""), caller=form.get("From"),
                                           at=now, hash_key=current_app.config["CALLER_HASH_KEY"])
        tracking.log_event(session, call, "step", at=now, step=state.step,
                           data=tracking.event_data(form))
        if form.get("DialCallStatus"):
            tracking.apply_dial_result(session, call, leg_sid=form.get("DialCallSid"),
                                       status=form.get("DialCallStatus"),
                                       duration=_int("DialCallDuration"), at=now)
        tracking.apply_flow(session, call, result.track, at=now)
    _safely_track("step", track)
    return body


def whisper() -> str:
    """POST /ivr/whisper: a referent picked up; tell them who calls before connecting."""
    now, form, session = _now(), request.form, db.session()
    state, parent = url_state.decode(request.args), _parent_sid()
    result = engine.whisper(_flow(), state, _context(now))
    # The whisper's Gather posts to its own endpoint, not to the caller's flow.
    body = renderer().response(result.actions, result_endpoint="ivr.whisper_result")

    def track():
        call = tracking.get_or_create_call(session, parent, at=now,
                                           hash_key=current_app.config["CALLER_HASH_KEY"])
        tracking.upsert_leg(session, call, form.get("CallSid", ""), number=form.get("To", ""), at=now)
        tracking.log_event(session, call, "whisper", at=now, step=state.step,
                           data=tracking.event_data(form))
    _safely_track("whisper", track)
    return body


def whisper_result() -> str:
    """POST /ivr/whisper/result: the referent's key; 1 connects, anything else declines."""
    now, form, session = _now(), request.form, db.session()
    state, parent = url_state.decode(request.args), _parent_sid()
    accepted = engine.whisper_accepted(_flow(), state, form.get("Digits"))
    call = tracking.get_or_create_call(session, parent, at=now,
                                       hash_key=current_app.config["CALLER_HASH_KEY"])
    leg = tracking.upsert_leg(session, call, form.get("CallSid", ""), number=form.get("To", ""),
                              at=now)
    tracking.log_event(session, call, "whisper", at=now, step="accepted" if accepted else "declined",
                       data=tracking.event_data(form))
    if accepted:
        # Must be stored before Twilio bridges: the dial result asks for it.
        tracking.accept_leg(session, leg, at=now)
        db.commit()
        return renderer().response([])
    db.commit()
    return renderer().response([Say("whisper_declined", {}), Hangup()])


def call_status() -> str:
    """POST /ivr/status: status callback of the inbound call."""
    now, form, session = _now(), request.form, db.session()
    at = _event_time(now)
    call = tracking.get_or_create_call(session, form.get("CallSid", ""), caller=form.get("From"),
                                       called=form.get("To"), at=at,
                                       hash_key=current_app.config["CALLER_HASH_KEY"])
    tracking.log_event(session, call, "status", at=at, data=tracking.event_data(form))
    tracking.apply_call_status(session, call, status=form.get("CallStatus", ""),
                               duration=_int("CallDuration"), at=at)
    db.commit()
    return renderer().response([])


def leg_status() -> str:
    """POST /ivr/leg-status: status callback of a dialled leg."""
    now, form, session = _now(), request.form, db.session()
    at = _event_time(now)
    call = tracking.get_or_create_call(session, _parent_sid(), at=at,
                                       hash_key=current_app.config["CALLER_HASH_KEY"])
    leg = tracking.upsert_leg(session, call, form.get("CallSid", ""), number=form.get("To", ""), at=at)
    tracking.log_event(session, call, "leg-status", at=at, data=tracking.event_data(form))
    tracking.apply_leg_status(session, leg, status=form.get("CallStatus", ""),
                              duration=_int("CallDuration"), at=at)
    db.commit()
    return renderer().response([])


def fallback() -> str:
    """POST /ivr/fallback: Twilio's Fallback URL; answers without touching the database."""
    log.error("fallback URL called for call %s (error %s)", request.form.get("CallSid", "?"),
              request.form.get("ErrorCode", "?"))
    return apology(renderer(), _form_url())
