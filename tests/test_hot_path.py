"""The incoming-call hot path: committed before the answer, same values as the ORM, resilient."""

from datetime import datetime, timezone

import pytest
from defusedxml import ElementTree
from sqlalchemy import select, text
from sqlalchemy.orm import sessionmaker

from callflows.actions import CallState, Dial, Gather, Say
from core import db as core_db
from core.db import make_engine
from ivr.simulator import Referent, Transcript, new_sid
from ivr.twiml import Renderer, forget_rendered
from tests.conftest import PUBLIC_BASE
from tests.helpers import call_record, heard
from tracking.models import Call, CallEvent

VOICE = f"{PUBLIC_BASE}/ivr/voice"


def _params(sid, caller="+33612345678"):
    return {"CallSid": sid, "From": caller, "To": "+33806000156", "CallStatus": "ringing",
            "AccountSid": "AC" + "0" * 32}


def test_first_webhook_is_committed_with_the_values_the_orm_writes(app, twilio, db, clock):
    clock.set(datetime(2026, 12, 21, 9, 0, tzinfo=timezone.utc))  # no microseconds: same text
    t = Transcript(call_sid=new_sid())
    status, _ = twilio.post(t, VOICE, _params(t.call_sid))
    assert status == 200
    # Read back through the ORM, on another connection: committed, and stored as the ORM
    # stores it (an equality on the instant only matches if the text is the same in SQLite).
    call = db.scalars(select(Call).where(Call.started_at == clock.now)).one()
    assert call.call_sid == t.call_sid and call.status == "in-progress"
    assert call.caller_masked == "+336••••••78" and call.caller_hash not in (None, "+33612345678")
    event = db.scalars(select(CallEvent).where(CallEvent.call_id == call.id)).one()
    assert event.at == clock.now and event.kind == "step"
    assert event.data == {"CallStatus": "ringing", "From": "+336••••••78", "To": "+338••••••56",
                          "_reached": "departement"}


def test_a_retried_first_webhook_keeps_one_call_and_its_first_instant(app, twilio, db, clock):
    t = Transcript(call_sid=new_sid())
    twilio.post(t, VOICE, _params(t.call_sid))
    first = clock.now
    clock.set("2026-12-21T10:00:07")
    status, body = twilio.post(t, VOICE, _params(t.call_sid))  # Twilio retried after a timeout
    assert status == 200 and "Gather" in body
    assert call_record(db, t.call_sid).started_at == first
    call = call_record(db, t.call_sid)
    assert len(db.scalars(select(CallEvent).where(CallEvent.call_id == call.id)).all()) == 2


def test_database_down_at_the_first_webhook_still_answers_then_records_the_call(app, twilio, db):
    working = app.extensions["svi.voice_engine"], app.extensions["svi.voice_sessionmaker"]
    core_db.dispose(app)
    broken = make_engine("postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1")
    app.extensions["svi.voice_engine"] = broken
    app.extensions["svi.voice_sessionmaker"] = sessionmaker(broken)
    t = Transcript(call_sid=new_sid())
    status, body = twilio.post(t, VOICE, _params(t.call_sid))
    # The welcome and the question need no database: the caller does not notice.
    assert status == 200
    assert [el.tag for el in ElementTree.fromstring(body)] == ["Say", "Gather", "Redirect"]
    assert "difficulté technique" not in body
    journal = app.extensions["svi.journal"]
    assert [e["kind"] for e in journal.pending()] == ["first"]
    app.extensions["svi.voice_engine"], app.extensions["svi.voice_sessionmaker"] = working
    assert journal.wait_until_empty(timeout=20)  # replayed once the database answers
    assert call_record(db, t.call_sid).step == "departement"
    again = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    assert again.dialled and call_record(db, again.call_sid).departement_code == "75"


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_connection_killed_between_calls_is_replaced_without_the_caller_noticing(app, twilio, db):
    first = twilio.call(caller="+33611111111", keys=["75"], referents=[Referent("accept")])
    assert first.dialled
    # The database restarts, or an administrator kills idle sessions: the kept connection dies.
    killed = db.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    assert killed.scalar() >= 1
    db.commit()
    again = twilio.call(caller="+33611111111", keys=["1"], referents=[Referent("accept")])
    assert "vous aviez demandé le département 75" in heard(again)
    assert "difficulté technique" not in heard(again)
    assert call_record(db, again.call_sid).departement_code == "75"


def test_rendered_documents_are_memoized_per_context_never_across():
    forget_rendered()
    calls = []

    def url(base):
        def build(endpoint, state=None, **values):
            calls.append(endpoint)
            return f"{base}/{endpoint}?s={state.step if state else ''}"
        return build

    gather = [Say("welcome", {}), Gather(CallState("departement"), (Say("ask_departement", {}),))]
    one = Renderer(url=url("https://a"), voice="Polly.Lea", language="fr-FR", context=("a", None))
    other = Renderer(url=url("https://b"), voice="Polly.Lea", language="fr-FR", context=("b", None))
    assert one.response(gather) == one.response(gather)
    assert calls == ["ivr.step"], "the second rendering came from the memo"
    assert "https://b/ivr.step" in other.response(gather)  # another context renders anew
    dial = [Dial(CallState("dial", departement="75"), ("+33199007501",), 20, 900)]
    one.response(dial)
    before = len(calls)
    one.response(dial)
    assert len(calls) > before, "documents with <Dial> carry per-call URLs: never memoized"


# -- one statement per write, same rows as the ORM ------------------------------------------------

def _first_values(at, track=None):
    return dict(caller_hash="h" * 64, caller_masked="+336••••••78", called="+33806000156",
                at=at, track=track or {"step": "departement"}, event_step="welcome",
                event={"CallStatus": "ringing", "From": "+336••••••78"})


def _rows(db, sid):
    call = call_record(db, sid)
    event = db.scalars(select(CallEvent).where(CallEvent.call_id == call.id)).one()
    keep = lambda row, skip: {c.name: getattr(row, c.key) for c in row.__table__.columns
                              if c.name not in skip}
    # updated_at: when the row last changed (the ORM's second flush stamps it with the clock).
    return keep(call, {"id", "call_sid", "updated_at"}), keep(event, {"id", "call_id"})


@pytest.mark.parametrize("track", [{"step": "departement"},
                                   {"step": "motif", "departement": "75", "thematique": None}])
def test_the_hot_write_stores_exactly_the_rows_the_orm_stores(app, db, track):
    """One statement (a CTE on PostgreSQL, a TEMP view's trigger on SQLite) writes the call and
    its event: column by column what the ORM path writes for the same webhook."""
    from tracking.operations import record_first_webhook, record_incoming_call
    at = datetime(2026, 12, 21, 9, 0, 0, 123456, tzinfo=timezone.utc)
    with app.app_context():
        assert core_db.on_hot_connection(
            lambda conn: record_incoming_call(conn, "CA" + "1" * 32, **_first_values(at, track)))
    orm = app.extensions["svi.sessionmaker"]()
    record_first_webhook(orm, "CA" + "2" * 32, **_first_values(at, track))
    orm.commit()
    orm.close()
    assert _rows(db, "CA" + "1" * 32) == _rows(db, "CA" + "2" * 32)


def test_the_hot_write_writes_nothing_for_a_known_call_or_one_with_callbacks_waiting(app, db):
    from tracking.models import UnmatchedCallback
    from tracking.operations import record_incoming_call
    at = datetime(2026, 12, 21, 9, 0, tzinfo=timezone.utc)
    db.add(Call(call_sid="CA" + "3" * 32, caller_masked="+336••••••78", started_at=at,
                updated_at=at))  # a call without any event: none is added to it
    db.add(UnmatchedCallback(call_sid="CA" + "4" * 32, kind="status", received_at=at, payload={}))
    db.commit()
    with app.app_context():
        for sid in ("CA" + "3" * 32, "CA" + "4" * 32):
            assert not core_db.on_hot_connection(
                lambda conn: record_incoming_call(conn, sid, **_first_values(at)))
        assert core_db.on_hot_connection(  # the connection still writes new calls after that
            lambda conn: record_incoming_call(conn, "CA" + "5" * 32, **_first_values(at)))
    assert db.scalars(select(CallEvent.call_id)).all() == [call_record(db, "CA" + "5" * 32).id]
    assert db.scalars(select(Call.call_sid).where(Call.call_sid == "CA" + "4" * 32)).all() == []


def test_sqlite_instants_are_the_text_sqlalchemy_writes():
    """UTCDateTime formats SQLite instants itself (one C call): the very text of SQLAlchemy's
    DATETIME, on which SQLite compares instants."""
    import random
    from datetime import timedelta
    from sqlalchemy import DateTime, create_engine
    from core.db import UTCDateTime
    dialect = create_engine("sqlite://").dialect
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    rng = random.Random(5)
    for _ in range(2000):
        at = datetime(2000, 1, 1, tzinfo=timezone(timedelta(minutes=rng.randrange(-720, 841, 15))))
        at += timedelta(microseconds=rng.randrange(10 ** 15))
        if rng.random() < 0.3:
            at = at.replace(microsecond=0)
        assert ours(at) == theirs(at.astimezone(timezone.utc).replace(tzinfo=None))
    assert ours(None) is None


def test_url_encoded_forms_are_read_as_werkzeug_reads_them():
    import io
    import random
    from urllib.parse import parse_qsl
    from werkzeug.wrappers import Request as WerkzeugRequest
    from core.request import Request, parse_urlencoded
    rng = random.Random(11)
    pieces = ["a", "B", "=", "&", "+", "%", "%2B", "%20", "%zz", "%E9", "%C3%A9", "é", " ", ";"]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
        assert parse_urlencoded(text) == parse_qsl(text, keep_blank_values=True,
                                                   errors="werkzeug.url_quote")
    for body in (b"From=%2B33612345678&To=+33806&Digits=&Digits=2&x", b"a=%ff", b"\xff=1", b""):
        def environ():
            return {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/x-www-form-urlencoded",
                    "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                    "SERVER_NAME": "x", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
        ours, theirs = Request(environ()).form, WerkzeugRequest(environ()).form
        assert list(ours.items(multi=True)) == list(theirs.items(multi=True))


def test_webhooks_skip_the_web_interface_hooks_pages_keep_them(app, twilio):
    client = app.test_client()
    page = client.get("/connexion")
    assert page.headers.get("Content-Security-Policy") and page.headers.get("X-Frame-Options")
    from web.extensions import limiter
    checked = []
    limiter.request_filter(lambda: checked.append(True) and False)  # exempts nothing
    t = Transcript(call_sid=new_sid())
    status, answer = twilio.post(t, VOICE, _params(t.call_sid))
    assert status == 200 and "Gather" in answer
    assert checked == []  # Twilio's requests never go through the rate limits
    client.get("/connexion")
    assert checked  # pages still do
