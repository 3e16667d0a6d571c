"""Whole calls driven through the signed webhooks: open départements."""

from sqlalchemy import select

from ivr.simulator import Referent
from tracking.models import Call, CallLeg, Outcome


def _call(db, sid):
    db.expire_all()
    return db.scalars(select(Call).where(Call.call_sid == sid)).one()


def test_open_metropolitan_departement_is_put_through(twilio, db, clock):
    clock.set("2026-12-21T10:00")  # Monday 10:00 in Paris
    t = twilio.call(caller="+33612345678", keys=["93", "1", "2"], referents=[Referent("accept", talk_seconds=95)])

    assert any("département 93, Seine-Saint-Denis" in h for h in t.heard)
    assert t.dialled == [["+33199009301"]]  # 93 rings its lines one after the other
    call = _call(db, t.call_sid)
    assert call.outcome is Outcome.answered
    assert call.departement_code == "93"
    assert call.motif == "usage"
    assert call.answered_number == "+33199009301"
    assert call.talk_seconds == 95
    assert call.status == "completed"
    assert call.caller_masked == "+336••••••78"
    assert call.caller_hash and "612345678" not in call.caller_hash
    legs = db.scalars(select(CallLeg).where(CallLeg.call_id == call.id)).all()
    assert [(l.number, l.status, l.accepted_at is not None) for l in legs] == [("+33199009301", "completed", True)]
