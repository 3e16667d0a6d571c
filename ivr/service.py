"""Webhook handlers: Twilio parameters in, engine and tracking called, TwiML text out.

Rules: every value Twilio posts is validated (identifiers, durations, instants) and a value out
of range is ignored with a log line, the rest still applied. Reading the directory may fail
(the caller then hears an apology, recorded as a technical failure); recording the call never
holds or drops the caller: each webhook builds one tracking record (`tracking/recorder.py`)
and `deliver` commits it within the voice path's short lock wait, or journals it durably for
a replay (`tracking/journal.py`).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime

from flask import current_app, request, url_for
from sqlalchemy import select

from callflows import engine
from callflows.actions import CallState, Hangup, Say
from callflows.keypad import callable_caller
from core import db, observability
from core import text as text_policy
from core.privacy import caller_hash, mask_number
from directory import cache as directory_cache
from ivr import state as url_state
from ivr.twiml import Renderer, apology
from prompts import french
from tracking import operations as tracking
from tracking import recorder
from tracking.journal import (DB_ERRORS, acceptance_noted, entries_holding, journal_of,
                              note_acceptance)

log = logging.getLogger("svi.ivr")

#: Twilio SIDs are two letters and 32 hex digits; anything else is not worth a row.
_SID = re.compile(r"^[A-Za-z]{2}[0-9A-Za-z]{1,62}$")
#: Durations Twilio reports, in seconds: a call lasts 24 hours at most.
MAX_SECONDS = 24 * 3600
#: A callback's own timestamp is trusted within this distance of the clock.
TIMESTAMP_SLACK = timedelta(hours=24)


# -- request helpers ----------------------------------------------------------------------------
def _arg(name: str) -> str | None:
    """A parameter of the URL; Twilio's own URLs (the number's Voice URL) have none to parse."""
    return request.args.get(name) if request.query_string else None


def _now():
    at = _arg("at")
    if at and current_app.config["SVI_ALLOW_SIMULATED_TIME"]:
        return url_state.parse_instant(at)
    return current_app.config["CLOCK"]()


def _event_time(default):
    """Twilio's own timestamp of a callback (RFC 2822) when plausible, else `default`.

    "-0000" (zone unknown) is read as UTC; an instant more than a day from the clock is ignored.
    """
    raw = request.form.get("Timestamp")
    if not raw:
        return default
    try:
        at = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        at = None
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if at is None or abs(at - default) > TIMESTAMP_SLACK:
        log.warning("Timestamp ignored (%r) for call %s", raw[:60], _sid("CallSid"))
        return default
    return at


def _int(name: str, limit: int | None = None) -> int | None:
    """A duration Twilio posts, in seconds; None when absent, not ASCII digits, or absurd.

    `limit`: the longest this duration can be (the limit the service gave Twilio for the verb):
    a longer one is brought back to it, with a log line."""
    value = request.form.get(name, "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and int(value) <= MAX_SECONDS):
        log.warning("%s ignored (%r) for call %s", name, value[:20], _sid("CallSid"))
        return None
    if limit is not None and int(value) > limit:
        log.warning("%s of %s s brought back to its limit of %d s for call %s", name, value,
                    limit, _sid("CallSid"))
        return limit
    return int(value)


def _text(name: str, max_length: int) -> str:
    """A text field Twilio posts, as it may be stored: cleaned by the one text policy (a NUL or
    another character XML and PostgreSQL refuse is dropped) and bounded."""
    return text_policy.clean(request.form.get(name, ""))[:max_length]


def _sid(name: str, value: str | None = None) -> str:
    """A SID posted by Twilio (or given), "" when malformed."""
    value = request.form.get(name, "") if value is None else value
    return value if _SID.match(value) else ""


def _parent_sid() -> str:
    """CallSid of the caller's call: in the URL on referent-side webhooks, else the request's."""
    return _sid("", _arg("c") or request.form.get("ParentCallSid")
                or request.form.get("CallSid", ""))


def _caller(form=None) -> dict:
    """Who calls, as stored: a keyed hash and a masked form (None for a callback without From)."""
    number = (request.form if form is None else form).get("From")
    if number is None:
        return {"caller_hash": None, "caller_masked": None}
    return {"caller_hash": caller_hash(number, current_app.config["CALLER_HASH_KEY"]),
            "caller_masked": mask_number(number)}


def renderer() -> Renderer:
    """A TwiML renderer whose URLs are absolute, public and carry the simulated time if any."""
    cfg = current_app.config
    base, keep_at, parent_sid = cfg["PUBLIC_BASE_URL"], _arg("at"), []

    def url(endpoint: str, state: CallState | None = None, **values) -> str:
        if state is not None:
            values.update(url_state.encode(state, cfg["CALLER_HASH_KEY"]))
        if endpoint in ("ivr.whisper", "ivr.whisper_result", "ivr.leg_status"):
            if not parent_sid:  # only whisper URLs carry it: not looked up for the others
                parent_sid.append(_parent_sid())
            if parent_sid[0]:
                values["c"] = parent_sid[0]
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


def _context(now, last_departement=None, directory_version=None, caller_number=None) -> engine.Context:
    """What the engine needs: the directory (and its incident messages, at `now`) from the
    process's cache; `caller_number`: Twilio's `From`, kept only if it can be called back."""
    cfg = current_app.config
    lookup = current_app.extensions["svi.directory_cache"].lookup(db.session,
                                                                   version=directory_version)
    return engine.Context(now=now, directory=lookup,
                          last_departement=last_departement, form_url=cfg["SVI_FORM_URL"],
                          time_limit=cfg["SVI_CALL_TIME_LIMIT"],
                          voicemail_max_seconds=cfg["SVI_VOICEMAIL_MAX_SECONDS"],
                          caller_number=callable_caller(caller_number),
                          announcements=lambda code: lookup.announcements(code, now))


def _state():
    """The call state the action URL carries (a callback number in it is sealed)."""
    return url_state.decode(request.args, current_app.config["CALLER_HASH_KEY"])


def _event() -> dict:
    """The webhook's event as kept; a callback number typed by the caller is personal data,
    masked like a caller's number."""
    event = tracking.event_data(request.form)
    step = _flow().steps.get(request.args.get("s", ""))
    if "Digits" in event and step is not None and step.get("type") == "ask_number":
        event["Digits"] = mask_number(event["Digits"])
    return event


def _flow():
    return current_app.extensions["svi.flow"]


def deliver(kind: str, payload: dict, *, hot=None) -> None:
    """Commit a tracking record now, or journal it when the database cannot take it in time.

    Records of a process wait behind its journal while it is not empty, so that a call's
    records are applied in order. `hot(connection, payload)`, when given, is tried first on the
    thread's hot connection (returns False to fall back to the ORM).
    """
    if not payload.get("sid"):
        log.warning("tracking record %s without a valid CallSid: ignored", kind)
        return
    journal = journal_of(current_app._get_current_object())
    if journal.has_pending():
        _journal(journal, kind, payload)
        return
    try:
        if hot is None or not db.on_hot_connection(lambda conn: hot(conn, payload)):
            with db.write_transaction() as session:  # the webhook's one commit
                recorder.apply(session, kind, payload)
    except DB_ERRORS:
        log.warning("database unavailable: %s record of call %s journaled", kind,
                    payload["sid"], exc_info=log.isEnabledFor(logging.DEBUG))
        _journal(journal, kind, payload)
    except Exception:
        # Never a silent drop: the journal retries it, then sets it aside for the operator.
        log.exception("tracking failed (%s) for call %s: journaled", kind, payload["sid"])
        _journal(journal, kind, payload)


def _journal(journal, kind: str, payload: dict) -> None:
    """Append to the journal; if even that fails (disk full, folder unwritable), the caller is
    still answered and the loss is logged loudly for the operator."""
    try:
        journal.append(kind, payload)
    except OSError:
        log.critical("journal unwritable (%s): %s record of call %s LOST", journal.folder, kind,
                     payload["sid"], exc_info=True)


def answer_or_apologize(handler):
    """Run a webhook handler; any failure becomes an apology in valid TwiML.

    On the caller's own flow the apology ends the call: it is recorded as a technical failure.
    """
    try:
        return handler()
    except Exception:
        db.rollback()
        log.exception("webhook %s failed for call %s", request.path, _sid("CallSid") or "?")
        observability.webhook_failed()
        if request.endpoint in ("ivr.voice", "ivr.step"):
            try:
                # At the first request the apology proves the call reached the service; later,
                # it only counts for a call the service answered.
                kind = "first_error" if request.endpoint == "ivr.voice" else "error"
                deliver(kind, _apology_record())
            except Exception:
                log.exception("technical failure of call %s not recorded", _sid("CallSid"))
        return apology(renderer(), _form_url())


def _apology_record() -> dict:
    """The tracking record of a webhook answered with the technical apology."""
    return dict(sid=_sid("CallSid"), at=_now(), step=request.args.get("s"),
                called=_text("To", 64), event=_event(), **_caller())


# -- webhooks ---------------------------------------------------------------------------------
#: The incoming call's two reads in one statement (one round trip): the caller's last
#: département (none for a hidden number: no hash matches NULL) and the directory version.
FIRST_READS = db.RawStatement(select(tracking.LAST_DEPARTEMENT.scalar_subquery(),
                                      directory_cache.VERSION.scalar_subquery()))


def incoming_call() -> str:
    """POST /ivr/voice: a new call (or Twilio retrying the first request).

    The hot path of every call, on the thread's hot connection and without an ORM session
    (unless the directory snapshot or the general path needs one): one statement reads the
    returning caller and the directory version, one write records the call and its event
    (`tracking.operations.record_incoming_call`), committed before Twilio gets its answer, or
    journaled."""
    app = current_app._get_current_object()
    cfg, form, flow = app.config, request.form, app.extensions["svi.flow"]
    now, sid, who = _now(), _sid("", form.get("CallSid", "")), _caller(form)
    reads = dict(caller_hash=who["caller_hash"], call_sid=sid,
                 since=now - timedelta(days=cfg["SVI_RETURNING_CALLER_DAYS"]))
    try:
        last, version = db.on_hot_connection(
            lambda conn: FIRST_READS.execute(conn, reads).fetchone())
        version = version or 0  # no edit yet
    except DB_ERRORS:  # routed from the directory this process holds, without the offer
        log.warning("database unavailable at the first webhook of call %s", sid)
        last, version = None, None
    result = engine.start(flow, _context(now, last, version))
    body = renderer().response(result.actions)
    # The access log's line (core/observability.py) has the CallSid and the step at INFO.
    log.debug("incoming call %s from %s", sid, who["caller_masked"])
    deliver_first_webhook(now, result.track, flow.start, who, sid)
    return body


def deliver_first_webhook(now, track: dict, event_step: str, who: dict, sid: str) -> None:
    """Record the call of this first webhook and its event: committed on the hot connection
    (or through the ORM when the CallSid is already stored or the flow said more), or journaled."""
    form = request.form
    # `test=1` is only in the URL the simulator signs (Twilio's number is set without it).
    deliver("first", dict(sid=sid, called=text_policy.clean(form.get("To", ""))[:64], at=now,
                          track=track, event=tracking.event_data(form), event_step=event_step,
                          test=_arg("test") == "1", **who),
            hot=recorder.record_first_hot)


def _accepted(leg_sid: str | None) -> bool:
    """The referent accepted this leg: recorded, kept apart, or still in a journal — this
    process's or another worker's (the whisper's webhooks may have reached another one); with
    the database unavailable, as noted on this host when it was accepted."""
    folder = journal_of(current_app._get_current_object()).folder
    if any(e.get("kind") == "whisper_result" and e["payload"].get("leg_sid") == leg_sid
           and e["payload"].get("accepted") for e in entries_holding(folder, leg_sid)):
        return True
    try:
        return recorder.leg_accepted(db.session(), leg_sid)
    except DB_ERRORS:
        db.rollback()
        return acceptance_noted(folder, leg_sid)


def step_result() -> str:
    """POST /ivr/step: the result of a Gather, Dial or Record of the step named in the URL."""
    now, form = _now(), request.form
    state = _state()
    dial_status = form.get("DialCallStatus")
    leg_sid = _sid("DialCallSid") or None
    accepted = _accepted(leg_sid) if dial_status and leg_sid else False
    cfg = current_app.config
    inp = engine.Input(digits=form.get("Digits") or None, dial_status=dial_status,
                       dial_accepted=accepted, recording_url=_text("RecordingUrl", 300) or None,
                       recording_seconds=_int("RecordingDuration", cfg["SVI_VOICEMAIL_MAX_SECONDS"]))
    result = engine.resume(_flow(), state, inp, _context(now, caller_number=form.get("From")))
    body = renderer().response(result.actions)
    # Twilio cuts a forwarded call at the time limit the <Dial> gave it.
    dial = (dict(leg_sid=leg_sid, status=_text("DialCallStatus", 20),
                 duration=_int("DialCallDuration", cfg["SVI_CALL_TIME_LIMIT"]))
            if dial_status else None)
    track = result.track
    if track.get("callback_number"):
        log.info("callback requested by call %s to %s", _sid("CallSid"),
                 mask_number(track["callback_number"]))
        # Sealed in the record (and so in the journal, should the database not take it now):
        # the ticket it creates is the one place the number is stored in clear.
        track = dict(track, callback_sealed=url_state.seal(track["callback_number"],
                                                           cfg["CALLER_HASH_KEY"]))
        del track["callback_number"]
    deliver("step", dict(sid=_sid("CallSid"), at=now, step=state.step, dial=dial,
                         track=track, event=_event(), **_caller()))
    return body


def whisper() -> str:
    """POST /ivr/whisper: a referent picked up; tell them who calls before connecting."""
    now, form = _now(), request.form
    state = _state()
    result = engine.whisper(_flow(), state, _context(now))
    # The whisper's Gather posts to its own endpoint, not to the caller's flow.
    body = renderer().response(result.actions, result_endpoint="ivr.whisper_result")
    deliver("whisper", dict(sid=_parent_sid(), leg_sid=_sid("CallSid"), number=_text("To", 32),
                            at=now, step=state.step, event=tracking.event_data(form)))
    return body


def whisper_result() -> str:
    """POST /ivr/whisper/result: the referent's key; 1 connects, anything else declines.

    The acceptance is recorded (or journaled) before the answer: the dial result asks for it.
    """
    now, form = _now(), request.form
    state = _state()
    accepted = engine.whisper_accepted(_flow(), state, form.get("Digits"))
    deliver("whisper_result", dict(sid=_parent_sid(), leg_sid=_sid("CallSid"),
                                   number=_text("To", 32), at=now, accepted=accepted,
                                   event=tracking.event_data(form)))
    if accepted:
        if _sid("CallSid"):  # for a dial result that cannot read it (see `_accepted`)
            try:
                note_acceptance(journal_of(current_app._get_current_object()).folder,
                                _sid("CallSid"))
            except OSError:
                log.warning("acceptance of leg %s not noted on disk", _sid("CallSid"))
        return renderer().response([])
    return renderer().response([Say("whisper_declined", {}), Hangup()])


def call_status() -> str:
    """POST /ivr/status: status callback of the inbound call."""
    now, form = _now(), request.form
    deliver("status", dict(sid=_sid("CallSid"), at=_event_time(now), received=now,
                           status=_text("CallStatus", 20), duration=_int("CallDuration"),
                           event=tracking.event_data(form)))
    return renderer().response([])


def leg_status() -> str:
    """POST /ivr/leg-status: status callback of a dialled leg."""
    now, form = _now(), request.form
    deliver("leg_status", dict(sid=_parent_sid(), leg_sid=_sid("CallSid"),
                               number=_text("To", 32), at=_event_time(now), received=now,
                               status=_text("CallStatus", 20),
                               duration=_int("CallDuration"), event=tracking.event_data(form)))
    return renderer().response([])


def fallback() -> str:
    """POST /ivr/fallback: Twilio's Fallback URL; answers without touching the database.

    The caller hears the technical apology: a technical failure, appended to the journal (a
    file), whose replay records it — creating the call if its first webhook never got through."""
    log.error("fallback URL called for call %s (error %s)", _sid("CallSid") or "?",
              _text("ErrorCode", 20) or "?")
    if _sid("CallSid"):
        _journal(journal_of(current_app._get_current_object()), "first_error", _apology_record())
    return apology(renderer(), _form_url())
