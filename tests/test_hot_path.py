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
