"""A diagnostic between the ceiling and the real step: the ceiling plus the step's statements.

The ceiling's bare Flask endpoint and signature check (`bench/ceiling.py`), which then runs
what the real step asks of the database, with the app's own code for it: the one statement
that reads the returning caller and the directory version (`ivr.service.FIRST_READS`), then
the one that records the call and its first event (`tracking.operations.record_incoming_call`,
the values the welcome step records), on a connection opened as the hot path opens its own
(`core.db.open_hot_connection`). No flow, no TwiML, none of the app's Flask hooks: the fixed
TwiML of the bare endpoint.

So the benchmark splits the real step's gap to the ceiling in two: this server minus the
ceiling is what the step's reads and second row cost the database and its driver; the real
step minus this server is everything else the app does in Python (Flask hooks, flow, TwiML,
the records' values).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from flask import Flask, Response, request
from twilio.request_validator import RequestValidator

from bench.bare import TWIML
from bench.ceiling import check_signature
from core.db import VOICE_LOCK_WAIT, make_engine, open_hot_connection

#: What the welcome step records for a caller who is not offered a département.
TRACK = {"step": "departement"}
EVENT_STEP = "welcome"
RETURNING_DAYS = 90


def create_app(settings: Mapping[str, str] | None = None) -> Flask:
    """The diagnostic server, configured like the ceiling (environment, or `settings`)."""
    from ivr.service import FIRST_READS
    from tracking.operations import event_data, record_incoming_call

    settings = os.environ if settings is None else settings
    app = Flask(__name__)
    validator = RequestValidator(settings["TWILIO_AUTH_TOKEN"])
    url = settings["PUBLIC_BASE_URL"] + "/ivr/voice"
    hash_key = settings["CALLER_HASH_KEY"].encode()
    engine = make_engine(settings["DATABASE_URL"], lock_wait=VOICE_LOCK_WAIT)
    held: dict[int, object] = {}

    def connection():
        if os.getpid() not in held:  # opened in each worker, after gunicorn's fork
            held.clear()
            held[os.getpid()] = open_hot_connection(engine)[1]
        return held[os.getpid()]

    app.extensions["statements.connection"] = connection

    @app.post("/ivr/voice")
    def voice():
        """Signature checked, the real step's two statements, fixed TwiML."""
        check_signature(validator, url)
        form = request.form
        number, sid, now = form.get("From", ""), form["CallSid"], datetime.now(UTC)
        caller = hmac.new(hash_key, number.encode(), hashlib.sha256).hexdigest()
        conn = connection()
        FIRST_READS.execute(conn, dict(caller_hash=caller, call_sid=sid,
                                        since=now - timedelta(days=RETURNING_DAYS))).fetchone()
        record_incoming_call(conn, sid, caller_hash=caller, caller_masked=number[:4] + "••",
                             called=form.get("To", ""), at=now, track=TRACK,
                             event=event_data(form), event_step=EVENT_STEP)
        return Response(TWIML, mimetype="text/xml")

    @app.get("/healthz")
    def healthz():
        """Readiness probe used by the benchmark runner."""
        return {"status": "ok"}

    return app
