"""The ceiling: a bare Flask endpoint that checks the signature and commits one INSERT.

Independent of the app's code: a plain Flask app (no extension, no blueprint, no hook), the
Twilio signature checked with the twilio library's `RequestValidator.compute_signature` — the
same HMAC-SHA1 over the same public URL and form the app computes, compared in constant time —
then ONE row inserted and committed in the same database as the real app, on a DBAPI
connection each worker keeps (sqlite3 or psycopg in autocommit: the INSERT is its own
transaction). It answers the bare endpoint's fixed TwiML.

The row is a call in the real `calls` table (its CallSid, a keyed hash and a masked form of the
caller, the number called, status and instants): the one row any step that records the call
must write, with the same indexes to maintain (unique CallSid, caller, département covering
index). A minimal table would measure a write the real step never does. The SQLite connection
gets the app's settings (WAL, synchronous=NORMAL, foreign keys, the voice path's lock wait), so
its commit is exactly as durable as the real step's.

Nothing that records the call before answering can serve more requests than this on the same
machine: the real step (`POST /ivr/voice` of the app) also reads the returning caller and the
directory version, runs the flow, renders its TwiML and writes the call's first event.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime

from flask import Flask, Response, abort, request
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

from bench.bare import TWIML

#: Same lock wait as the app's voice path (core.db.VOICE_LOCK_WAIT), in seconds.
LOCK_WAIT = 1.5
INSERT = ("INSERT INTO calls (call_sid, caller_hash, caller_masked, called_number, status, "
          "started_at, updated_at, outcome_inferred, test) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, "
          "{0}, {0}, {0})")


class _Form:
    """The form with the `getall` the validator tries first (no AttributeError per field)."""

    def __init__(self, form):
        self._form = form

    def __iter__(self):
        return iter(self._form)

    def getall(self, name: str) -> list[str]:
        return self._form.getlist(name)


def check_signature(validator: RequestValidator, url: str) -> None:
    """403 unless the request carries Twilio's signature of `url` and its form (constant-time
    comparison, the twilio library's HMAC-SHA1)."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not hmac.compare_digest(validator.compute_signature(url, _Form(request.form)), signature):
        abort(403)


class _Database:
    """One DBAPI connection per worker process, opened on first use (after gunicorn's fork)."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.sql = INSERT.format("?" if self.sqlite else "%s")
        self._conn, self._pid = None, None

    def connection(self):
        if self._pid != os.getpid():
            if self.sqlite:
                conn = sqlite3.connect(self.url.database, timeout=LOCK_WAIT,
                                       isolation_level=None, check_same_thread=False)
                for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
                    conn.execute(f"PRAGMA {pragma}")
            else:
                import psycopg
                q = self.url.query
                conn = psycopg.connect(dbname=self.url.database, user=self.url.username,
                                       host=q.get("host"), port=q.get("port"), autocommit=True)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def insert(self, values: tuple) -> None:
        """The one INSERT, committed (autocommit: the statement is its own transaction)."""
        self.connection().execute(self.sql, values)


def create_app(settings: Mapping[str, str] | None = None) -> Flask:
    """The ceiling server, configured like the real app: by the environment, or `settings`
    (DATABASE_URL, TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL, CALLER_HASH_KEY)."""
    settings = os.environ if settings is None else settings
    app = Flask(__name__)
    token, base = settings["TWILIO_AUTH_TOKEN"], settings["PUBLIC_BASE_URL"]
    validator, url = RequestValidator(token), base + "/ivr/voice"
    hash_key = settings["CALLER_HASH_KEY"].encode()
    database = app.extensions["ceiling.database"] = _Database(settings["DATABASE_URL"])

    @app.post("/ivr/voice")
    def voice():
        """Signature checked, the call inserted and committed, fixed TwiML."""
        check_signature(validator, url)
        form = request.form
        number = form.get("From", "")
        now = datetime.now(UTC)
        at = now.replace(tzinfo=None).isoformat(" ") if database.sqlite else now
        database.insert((form["CallSid"],
                         hmac.new(hash_key, number.encode(), hashlib.sha256).hexdigest(),
                         number[:4] + "••••" + number[-2:], form.get("To", "")[:64],
                         "in-progress", at, at, False, False))
        return Response(TWIML, mimetype="text/xml")

    @app.get("/healthz")
    def healthz():
        """Readiness probe used by the benchmark runner."""
        return {"status": "ok"}

    return app
