"""Twilio's deadline: every webhook answers well within 15 s whatever the database does.

Another process takes the write lock for 20 s (a long import, a backup) while calls come in:
each caller gets well-formed TwiML in under 5 s and is routed; what could not be written is
journaled, and every call is recorded, complete, once the lock is released.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from defusedxml import ElementTree
from sqlalchemy import func, select

from app import create_app
from core.db import dispose
from ivr.simulator import Emulator, FlaskTransport, Referent
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests.helpers import call_record
from tracking import journal as journal_module
from tracking.journal import apply_entries, journal_of
from tracking.models import CallEvent, Outcome

#: Takes the database's write lock, says so, holds it for argv[2] seconds, then lets go.
LOCKER = r"""
import sys, time
url, seconds = sys.argv[1], float(sys.argv[2])
if url.startswith("sqlite"):
    import sqlite3
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # what an import's transaction holds
else:
    import psycopg
    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    # A migration or a bulk job: writers wait, readers do not.
    conn.execute("LOCK TABLE calls, call_events, call_legs, solicitations, unmatched_callbacks "
                 "IN EXCLUSIVE MODE")
print("locked", flush=True)
time.sleep(seconds)
conn.rollback() if hasattr(conn, "rollback") else None
conn.close()
"""
LOCK_SECONDS = 20
DEADLINE = 5.0


class TimedTransport:
    """The emulator's transport, timing every webhook."""

    def __init__(self, inner):
        self.inner, self.timings = inner, []

    def post(self, url, params, headers):
        started = time.monotonic()
        status, body = self.inner.post(url, params, headers)
        self.timings.append((time.monotonic() - started, url, status, body))
        return status, body


def test_calls_during_a_long_write_lock_are_answered_in_time_and_all_recorded(app, twilio, db,
                                                                              monkeypatch):
    transport = twilio.transport = TimedTransport(twilio.transport)
    replayed = []

    def apply_and_count(sessions, entries):
        applied = apply_entries(sessions, entries)
        replayed.extend(entries)
        return applied
    monkeypatch.setattr(journal_module, "apply_entries", apply_and_count)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, app.config["DATABASE_URL"],
                               str(LOCK_SECONDS)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        started, calls = time.monotonic(), []
        while time.monotonic() - started < LOCK_SECONDS - 6:  # a bounded load: 4 calls a second
            calls.append(twilio.call(caller=f"+3361234{len(calls):04d}", keys=["75", "1", "2"],
                                     referents=[Referent("accept", talk_seconds=42)]))
            time.sleep(max(0.0, started + len(calls) / 4 - time.monotonic()))
        assert locker.poll() is None, "the lock must still be held: the calls above met it"
    finally:
        locker.wait(timeout=LOCK_SECONDS + 10)
    assert len(calls) >= 3
    slowest = max(seconds for seconds, *_ in transport.timings)
    assert slowest < DEADLINE, f"a webhook took {slowest:.1f} s"
    for seconds, url, status, body in transport.timings:
        assert status == 200 and ElementTree.fromstring(body).tag == "Response", url
    for t in calls:  # routed as usual: rung, accepted by the referent
        assert t.dialled == [["+33199007501", "+33199007502"]]
        assert "difficulté technique" not in " ".join(t.heard)

    assert journal_of(app).wait_until_empty(timeout=60)
    # What met the lock was journaled, then replayed: every webhook of every call.
    assert len(replayed) == sum(len(t.requests) for t in calls)
    for t in calls:
        call = call_record(db, t.call_sid)
        assert (call.status, call.outcome.name, call.departement_code, call.thematique) == \
            ("completed", "answered", "75", "usage")
        assert call.talk_seconds == 42 and [leg.accepted_at is not None for leg in call.legs] == [True]
        events = db.scalar(select(func.count()).select_from(CallEvent)
                           .where(CallEvent.call_id == call.id))
        assert events == len(t.requests), "one event per webhook, none lost, none twice"


def _locked_for(app, seconds: float):
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, app.config["DATABASE_URL"],
                               str(seconds)], stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    return locker


def test_a_journal_left_by_a_dead_process_is_replayed_once(app, twilio, db, tmp_path):
    """A worker journals calls, then dies (here: its journal file is closed and unlocked, as
    the kernel does); the scheduler's replay, or the CLI's, applies each record exactly once."""
    journal = journal_of(app)
    journal._start_replayer = lambda: None  # this "worker" dies before it can replay
    locker = _locked_for(app, 4)
    try:
        t = twilio.call(caller="+33612345678", keys=["75", "1", "2"],
                        referents=[Referent("accept")])
    finally:
        locker.wait(timeout=15)
    assert t.dialled and len(journal.pending()) == len(t.requests)
    path = journal.path
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(t.requests)
    journal._file.close()  # the process is gone: its flock goes with it
    journal._pending.clear()
    result = app.test_cli_runner().invoke(args=["tracking", "replay-journal"])
    assert result.exit_code == 0 and f"{len(t.requests)} enregistrement(s) rejoué(s)" in result.output
    assert not path.exists()
    call = call_record(db, t.call_sid)
    assert (call.status, call.outcome.name) == ("completed", "answered")
    # The same lines again (a replay cut short before the file was deleted): nothing twice.
    assert apply_entries(app.extensions["svi.sessionmaker"], lines) == 0
    events = db.scalar(select(func.count()).select_from(CallEvent).where(CallEvent.call_id == call.id))
    assert events == len(t.requests)


def test_an_unwritable_journal_still_answers_the_caller(app, twilio, db, tmp_path, caplog):
    journal = journal_of(app)
    journal.folder = tmp_path / "not-a-folder"  # a file where the folder should be (root writes
    journal.folder.write_text("")                # anywhere, so permissions would not do)
    locker = _locked_for(app, 4)
    try:
        t = twilio.call(caller="+33612345678", keys=["75", "1", "2"],
                        referents=[Referent("accept")])
    finally:
        locker.wait(timeout=15)
    assert t.dialled and "difficulté technique" not in " ".join(t.heard)
    assert all(status == 200 for _, _, status in t.requests)
    assert "LOST" in caplog.text


class SplitTransport:
    """Two workers (gunicorn -w 2) sharing the database and the journal folder: the referent's
    whisper webhooks reach one, the caller's the other."""

    def __init__(self, whisper_app, other_app):
        self.whisper, self.other = FlaskTransport(whisper_app), FlaskTransport(other_app)

    def post(self, url, params, headers):
        return (self.whisper if "/ivr/whisper" in url else self.other).post(url, params, headers)


def test_an_acceptance_journaled_by_another_worker_counts(app, db):
    """During a lock, worker A journals the referent's acceptance; worker B, which gets the dial
    result, must see it: the caller is not told that every line is busy, the call is answered
    with its talk time once both journals are replayed, in whichever order."""
    config = {key: app.config[key] for key in ("DATABASE_URL", "TWILIO_AUTH_TOKEN",
                                               "PUBLIC_BASE_URL", "SVI_CALLER_ID", "SECRET_KEY",
                                               "CLOCK", "JOURNAL_DIR")}
    other = create_app(config)
    twilio = Emulator(SplitTransport(app, other), auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)
    whisper_journal = journal_of(app)
    whisper_journal._start_replayer = lambda: None  # replayed by hand, last
    try:
        locker = _locked_for(app, 6)
        try:
            t = twilio.call(caller="+33612345678", keys=["75", "1", "2"],
                            referents=[Referent("accept", talk_seconds=42)])
        finally:
            locker.wait(timeout=20)
        assert "occupées" not in " ".join(t.heard)
        assert any(e["kind"] == "whisper_result" for e in whisper_journal.pending())
        assert journal_of(other).wait_until_empty(timeout=30)  # the dial result first
        whisper_journal.replay_pending()
    finally:
        journal_of(other).wait_until_empty(timeout=30)
        dispose(other)
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.talk_seconds, call.answered_number) == \
        (Outcome.answered, 42, "+33199007501")
