"""The ceiling: the real app whose incoming-call URL only checks the signature and records the call.

Any call step that commits the call before answering does at least this much: Flask, the form,
the Twilio signature (the blueprint's own check), and the same durable write as the real step
(`ivr.service.deliver_first_webhook`: the call and its first event, committed).
No returning-caller read, no directory, no flow: the answer is the bare endpoint's fixed TwiML.
Its throughput is the most a real step can reach on the machine, whatever the rest costs.
"""

from __future__ import annotations

from flask import Flask, Response, current_app

import app as svi
from bench.bare import TWIML
from ivr import service


def record_only() -> Response:
    """POST /ivr/voice (signature already checked): record the call as the real step does."""
    service.deliver_first_webhook(current_app.config["CLOCK"](), {"step": "departement"},
                                 "welcome")
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
