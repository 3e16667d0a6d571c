"""The ceiling: the real app whose incoming-call URL only checks the signature and records the call.

Any call step that commits the call before answering does at least this much: Flask, the form,
the Twilio signature (the blueprint's own check), and the same durable write as the real step
(`tracking.record_incoming_call` on the hot connection: the call and its first event, committed).
No returning-caller read, no directory, no flow: the answer is the bare endpoint's fixed TwiML.
Its throughput is the most a real step can reach on the machine, whatever the rest costs.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

import app as svi
from bench.bare import TWIML
from core import db
from tracking import operations as tracking


def record_only() -> Response:
    """POST /ivr/voice (signature already checked): commit the call and its event, fixed TwiML."""
    form, cfg = request.form, current_app.config
    first = dict(caller=form.get("From"), called=form.get("To"), at=cfg["CLOCK"](),
                 hash_key=cfg["CALLER_HASH_KEY"], track={"step": "departement"},
                 event=tracking.event_data(form), event_step="welcome")
    if not db.on_hot_connection(
            lambda conn: tracking.record_incoming_call(conn, form.get("CallSid", ""), **first)):
        raise RuntimeError("CallSid already recorded: the load must use new CallSids")
    return Response(TWIML, mimetype="text/xml")


def reduce_to_write(app: Flask) -> Flask:
    """Make `app`'s incoming-call URL `record_only`; the signature check before it stays."""
    if "ivr.voice" not in app.view_functions:
        raise LookupError("the app has no ivr.voice view to reduce")
    app.view_functions["ivr.voice"] = record_only
    return app


def create_app() -> Flask:
    """The real app (settings, database, signature check) with the voice URL reduced to its write."""
    return reduce_to_write(svi.create_app())
