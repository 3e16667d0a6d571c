"""The journal's parts the outage test (tests/test_outage.py) relies on, one by one, on both
databases: records of one call applied in any order, a journal gone once replayed, dead
processes' journals replayed at start-up and by concurrent replayers exactly once, a record no
replay can apply set aside, an acceptance found when the database cannot be read, and a process
started during an outage routing its calls from the local copy of the directory."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from app import create_app
from core.db import dispose, make_engine
from ivr.simulator import Emulator, FlaskTransport, Referent
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests.helpers import call_record, heard
from tracking import journal as journal_module
from tracking.journal import (REJECTED, acceptance_noted, apply_entries, journal_of,
                              note_acceptance, replay_orphans)
from tracking.models import CallEvent, CallLeg, Outcome, Solicitation

ANSWERED = dict(keys=["75", "1", "2"], referents=[Referent("accept", talk_seconds=42)])
UNREACHABLE = "postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1"


@contextmanager
def database_down(app):
    """The voice path's database stops answering (its engine points nowhere); the journal's
    replay, on the app's other engine, still reaches it."""
    keep = (app.extensions["svi.voice_engine"], app.extensions["svi.voice_sessionmaker"],
            getattr(app.extensions["svi.hot_connections"], "held", None))
    broken = make_engine(UNREACHABLE, lock_wait=1.5)
    app.extensions["svi.voice_engine"] = broken
    app.extensions["svi.voice_sessionmaker"] = sessionmaker(broken)
    app.extensions["svi.hot_connections"].held = None
    try:
        yield
    finally:
        app.extensions["svi.voice_engine"], app.extensions["svi.voice_sessionmaker"] = keep[:2]
        app.extensions["svi.hot_connections"].held = keep[2]
        broken.dispose()


class Ticking:
    """The clock moves on a second each time it is read: each webhook of a call has its own
    instant, as in real life (a frozen clock would leave their order undecided)."""

    def __init__(self, start):
        self.now, self.lock = start, threading.Lock()

    def __call__(self):
        with self.lock:
            self.now += timedelta(seconds=1)
            return self.now


def shape(db, sid) -> tuple:
    call = call_record(db, sid)
    legs = sorted((leg.number, leg.status, leg.accepted_at is not None, leg.duration_seconds)
                  for leg in db.scalars(select(CallLeg).where(CallLeg.call_id == call.id)))
    rows = db.scalar(select(func.count()).select_from(Solicitation)
                     .where(Solicitation.call_id == call.id))
    events = db.scalar(select(func.count()).select_from(CallEvent)
                       .where(CallEvent.call_id == call.id))
    return (call.status, call.outcome, call.departement_code, call.thematique, call.step,
            call.talk_seconds, call.answered_number, legs, rows, events)


def journaled_call(app, twilio, **call) -> tuple:
    """A call made while the database is down, its records kept in the journal (not replayed:
    this process "dies" before it can); returns the transcript and the journal's entries."""
    journal = journal_of(app)
    journal._start_replayer = lambda: None
    if app.extensions["svi.directory_cache"].version is None:
        twilio.call(caller="+33699999998", **ANSWERED)  # the process holds the directory
    with database_down(app):
        t = twilio.call(caller="+33612345678", **call)
    return t, journal.pending()


def die(journal) -> None:
    """The process is gone: its lock with it, nothing left to replay in memory."""
    journal._file.close()
    journal._file = None
    journal._pending.clear()


def test_records_of_a_call_applied_in_any_order_give_the_same_call(app, twilio, db, clock):
    """Two workers journal a call's records between them and replay them in either order:
    the call ends up as if they had come in order (département and thématique included)."""
    app.config["CLOCK"] = Ticking(clock.now)
    reference = twilio.call(caller="+33699999999", **ANSWERED)
    t, entries = journaled_call(app, twilio, **ANSWERED)
    assert [e["kind"] for e in entries][0] == "first" and len(entries) == len(t.requests)
    die(journal_of(app))
    sessions = app.extensions["svi.sessionmaker"]
    first, rest = entries[0], entries[1:]
    # The newest first: the hang-up, the dial result (which knows no département), … then the
    # steps that chose the département and the thématique.
    for entry in [first, *reversed(rest)]:
        assert apply_entries(sessions, [entry]) == 1
    assert shape(db, t.call_sid) == shape(db, reference.call_sid)
    assert shape(db, t.call_sid)[1:5] == (Outcome.answered, "75", "usage", "dial")


def test_callbacks_kept_apart_then_their_call_in_any_order(app, twilio, db, clock):
    """The call's first record comes last (another worker's journal), its other records in
    reverse order before it: kept apart, then adopted — the same call again."""
    app.config["CLOCK"] = Ticking(clock.now)
    reference = twilio.call(caller="+33699999999", **ANSWERED)
    t, entries = journaled_call(app, twilio, **ANSWERED)
    die(journal_of(app))
    sessions = app.extensions["svi.sessionmaker"]
    for entry in [*reversed(entries[1:]), entries[0]]:
        assert apply_entries(sessions, [entry]) == 1
    assert shape(db, t.call_sid) == shape(db, reference.call_sid)


def test_a_replayed_journal_leaves_no_file(app, twilio, db):
    journal = journal_of(app)
    twilio.call(caller="+33699999999", **ANSWERED)  # the process holds the directory
    with database_down(app):
        t = twilio.call(caller="+33612345678", **ANSWERED)
        assert journal.path.exists()
    assert journal.wait_until_empty(timeout=30)
    assert list(journal.folder.glob("*.jsonl")) == []
    assert call_record(db, t.call_sid).outcome is Outcome.answered
    t = twilio.call(caller="+33612345679", **ANSWERED)  # the database answers: no journal
    assert list(journal.folder.glob("*.jsonl")) == []


def test_a_dead_process_journal_is_replayed_when_a_new_process_starts(app, twilio, db,
                                                                     monkeypatch):
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)  # a web process, not a command
    t, entries = journaled_call(app, twilio, **ANSWERED)
    path = journal_of(app).path
    die(journal_of(app))
    other = create_app({**{k: app.config[k] for k in (
        "DATABASE_URL", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "SVI_CALLER_ID", "SECRET_KEY",
        "CLOCK", "JOURNAL_DIR", "MAIL_OUTBOX_DIR")}})
    try:
        deadline = time.monotonic() + 30
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not path.exists(), "the new process did not replay the dead one's journal"
    finally:
        dispose(other)
    assert call_record(db, t.call_sid).outcome is Outcome.answered
    assert apply_entries(app.extensions["svi.sessionmaker"], entries) == 0  # all applied once


def test_concurrent_replayers_apply_each_record_once_and_set_a_bad_one_aside(app, twilio, db):
    t, entries = journaled_call(app, twilio, **ANSWERED)
    journal = journal_of(app)
    bad = {"id": "f" * 32, "kind": "nonsense", "payload": {"sid": t.call_sid}}
    with open(journal.path, "ab") as f:  # a record no replay can apply, then a cut line
        f.write((json.dumps(bad) + "\n").encode() + b'{"id": "cut')
    die(journal)
    sessions, counts, failures = app.extensions["svi.sessionmaker"], [], []

    def replay():
        try:
            counts.append(replay_orphans(journal.folder, sessions))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            failures.append(exc)
    threads = [threading.Thread(target=replay) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and sum(counts) == len(entries)
    assert list(journal.folder.glob("*.jsonl")) == [journal.folder / REJECTED]
    assert [json.loads(line)["id"] for line in
            (journal.folder / REJECTED).read_text().splitlines()] == [bad["id"]]
    assert call_record(db, t.call_sid).outcome is Outcome.answered
    assert shape(db, t.call_sid)[-1] == len(t.requests)
    # The operator puts set-aside records back (README): replayed, this one set aside again.
    (journal.folder / REJECTED).rename(journal.folder / "requeue.jsonl")
    assert replay_orphans(journal.folder, sessions) == 0
    assert [p.name for p in journal.folder.glob("*.jsonl")] == [REJECTED]


class BreakAfterAcceptance:
    """The database stops answering right after the referent accepted (the whisper's result
    committed): the dial result that follows cannot read the acceptance."""

    def __init__(self, app):
        self.app, self.client, self.down = app, FlaskTransport(app), None

    def post(self, url, params, headers):
        answer = self.client.post(url, params, headers)
        if "/ivr/whisper/result" in url and self.down is None:
            self.down = database_down(self.app)
            self.down.__enter__()
        return answer


def test_a_dial_result_that_cannot_read_the_acceptance_finds_it_noted(app, db):
    transport = BreakAfterAcceptance(app)
    twilio = Emulator(transport, auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)
    try:
        t = twilio.call(caller="+33612345678", **ANSWERED)
    finally:
        transport.down.__exit__(None, None, None)
    assert transport.down is not None
    assert "occupées" not in heard(t), "the caller, connected, was told every line was busy"
    assert journal_of(app).wait_until_empty(timeout=30)
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.talk_seconds) == (Outcome.answered, 42)


def test_acceptances_are_noted_per_window_and_old_windows_go(tmp_path, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(journal_module.time, "time", lambda: now[0])
    note_acceptance(tmp_path, "CA" + "1" * 32)
    assert acceptance_noted(tmp_path, "CA" + "1" * 32)
    assert not acceptance_noted(tmp_path, "CA" + "2" * 32)
    assert not acceptance_noted(tmp_path, "CA" + "1" * 31)  # whole lines only
    now[0] += journal_module.ACCEPTED_KEEP + 2 * journal_module.ACCEPTED_WINDOW
    note_acceptance(tmp_path, "CA" + "2" * 32)  # a new window: the old ones go
    assert not acceptance_noted(tmp_path, "CA" + "1" * 32)
    assert acceptance_noted(tmp_path, "CA" + "2" * 32)
    assert len(list(tmp_path.glob("accepted-*.txt"))) == 1


def test_a_process_started_during_an_outage_routes_from_the_local_copy(app, twilio, db):
    twilio.call(caller="+33699999999", **ANSWERED)  # this process read the directory: copied
    assert (journal_of(app).folder / "directory.json").exists()
    other = create_app({**{k: app.config[k] for k in (
        "DATABASE_URL", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "SVI_CALLER_ID", "SECRET_KEY",
        "CLOCK", "JOURNAL_DIR", "MAIL_OUTBOX_DIR")}})
    try:
        with database_down(other):  # a worker restarted while the database is down
            t = Emulator(FlaskTransport(other), auth_token=AUTH_TOKEN,
                         public_base=PUBLIC_BASE).call(caller="+33612345678", keys=["93", "1", "2"],
                                                       referents=[Referent("accept")])
        assert t.dialled == [["+33199009301"]] and "difficulté technique" not in heard(t)
        assert journal_of(other).wait_until_empty(timeout=30)
    finally:
        dispose(other)
    assert call_record(db, t.call_sid).outcome is Outcome.answered


def test_the_local_copy_of_the_directory_is_the_directory(app, db):
    from bench.callers import open_all_day
    from directory.cache import dump_directory, load_directory
    from directory.operations import all_snapshots, set_worked_holiday
    open_all_day(app.config["DATABASE_URL"], ["75", "2A"])  # openings with hours
    set_worked_holiday(db, "Lundi de Pentecôte", worked=True)
    db.commit()
    views = {v.code: v for v in all_snapshots(db)}
    assert any(v.exceptions for v in views.values()) and any(v.worked_holidays
                                                             for v in views.values())
    assert load_directory(dump_directory(7, views)) == (7, views)
