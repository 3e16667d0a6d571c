"""Every Twilio webhook URL. Signatures are checked on all of them; answers are always TwiML."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request

from core import db
from ivr import security, service

bp = Blueprint("ivr", __name__, url_prefix="/ivr")


#: Largest webhook body accepted: Twilio's are about 2 KB. Checked before the form is parsed.
MAX_WEBHOOK_BYTES = 64 * 1024


@bp.before_request
def check_signature():
    """Refuse (413) an oversized body before reading it, then (403) any request not signed
    with the account's auth token, when one is set."""
    req, cfg = request._get_current_object(), current_app.config
    req.max_content_length = MAX_WEBHOOK_BYTES
    req.max_form_memory_size = MAX_WEBHOOK_BYTES
    db.use_voice_engine()
    token = cfg["TWILIO_AUTH_TOKEN"]
    if token and not security.is_valid(req, token, cfg["PUBLIC_BASE_URL"]):
        current_app.logger.warning("forged or unsigned webhook refused: %s", request.path)
        abort(403)


def _twiml(handler) -> Response:
    return Response(service.answer_or_apologize(handler), mimetype="text/xml")


@bp.post("/voice")
def voice():
    """Incoming call (the number's Voice URL)."""
    return _twiml(service.incoming_call)


@bp.post("/step")
def step():
    """Result of a Gather, Dial or Record of the call flow."""
    return _twiml(service.step_result)


@bp.post("/whisper")
def whisper():
    """A referent's line picked up: whisper before connecting."""
    return _twiml(service.whisper)


@bp.post("/whisper/result")
def whisper_result():
    """The referent's key on the whisper."""
    return _twiml(service.whisper_result)


@bp.post("/status")
def status():
    """Status callback of the inbound call (the number's Status Callback URL)."""
    return _twiml(service.call_status)


@bp.post("/leg-status")
def leg_status():
    """Status callback of a dialled leg."""
    return _twiml(service.leg_status)


@bp.post("/fallback")
def fallback():
    """The number's Fallback URL: no database, an apology and the form."""
    return _twiml(service.fallback)
