"""The Twilio edge: signatures, failures, fallback, and idempotent status callbacks."""

import itertools
import random
from datetime import timedelta

import pytest
from defusedxml import ElementTree
from sqlalchemy.orm import sessionmaker

from core.db import make_engine
from ivr.simulator import Referent, Transcript, new_sid
from tests.conftest import PUBLIC_BASE
from tests.helpers import call_record, heard
from tracking import operations as tracking_operations
from tracking.models import Outcome

VOICE = f"{PUBLIC_BASE}/ivr/voice"


def _params(sid, **extra):
    return {"CallSid": sid, "From": "+33612345678", "To": "+33806000156",
            "AccountSid": "AC" + "0" * 32, **extra}


def _verbs(body):
    return [el.tag for el in ElementTree.fromstring(body)]


def test_forged_signature_is_refused(app, twilio):
    client = app.test_client()
    params = _params(new_sid())
    good = twilio.signature(VOICE, params)
    assert client.post(VOICE, data=params, headers={"X-Twilio-Signature": good}).status_code == 200
    tampered = dict(params, From="+33699999999")  # same signature, other parameters
    assert client.post(VOICE, data=tampered, headers={"X-Twilio-Signature": good}).status_code == 403
    assert client.post(VOICE, data=params).status_code == 403  # no signature at all
    for junk in ("é", good[:-1] + "é", "\u00a0" + good):  # not base64: refused, never a 500
        assert client.post(VOICE, data=params, headers={"X-Twilio-Signature": junk}).status_code == 403
    # A state URL edited by hand (another département) is refused too.
    step = f"{PUBLIC_BASE}/ivr/step?s=confirm&d=93"
    sig = twilio.signature(step, params)
    forged = f"{PUBLIC_BASE}/ivr/step?s=confirm&d=75"
    assert client.post(forged, data=params, headers={"X-Twilio-Signature": sig}).status_code == 403
    for path in ("/ivr/status", "/ivr/leg-status", "/ivr/whisper", "/ivr/fallback"):
        assert client.post(PUBLIC_BASE + path, data=params).status_code == 403


def test_signature_is_checked_against_the_public_url_behind_a_proxy(app, twilio):
    """Twilio signs https://public…; the app sees http://localhost: PUBLIC_BASE_URL decides."""
    client = app.test_client()
    params = _params(new_sid())
    signed_public = twilio.signature(VOICE, params)
    resp = client.post("http://localhost/ivr/voice", data=params,
                       headers={"X-Twilio-Signature": signed_public})
    assert resp.status_code == 200
    signed_local = twilio.signature("http://localhost/ivr/voice", params)
    resp = client.post("http://localhost/ivr/voice", data=params,
                       headers={"X-Twilio-Signature": signed_local})
    assert resp.status_code == 403


def test_database_failure_mid_call_still_answers_valid_twiml(app, twilio, db):
    t = Transcript(call_sid=new_sid())
    status, first = twilio.post(t, VOICE, _params(t.call_sid))
    assert status == 200
    gather_action = ElementTree.fromstring(first).find("Gather").get("action")

    broken = make_engine("postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1")
    app.extensions["svi.voice_sessionmaker"] = sessionmaker(broken)
    status, body = twilio.post(t, gather_action, _params(t.call_sid, Digits="93"))
    assert status == 200
    assert _verbs(body) == ["Say", "Hangup"]
    assert "difficulté technique" in body and "assistance.example.gouv.fr" in body
    # The fallback URL never needs the database.
    status, body = twilio.post(t, f"{PUBLIC_BASE}/ivr/fallback", _params(t.call_sid, ErrorCode="11200"))
    assert status == 200 and _verbs(body) == ["Say", "Hangup"]


def test_tracking_failure_never_drops_the_caller(app, twilio, db, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(tracking_operations, "log_event", broken)
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    assert t.dialled == [["+33199007501", "+33199007502"]]  # routed all the same


def test_stale_or_tampered_state_gets_an_apology_not_a_500(app, twilio):
    t = Transcript(call_sid=new_sid())
    for url in (f"{PUBLIC_BASE}/ivr/step?s=no_such_step", f"{PUBLIC_BASE}/ivr/step?s=confirm&d=99",
                f"{PUBLIC_BASE}/ivr/step?s=confirm&a=x"):
        status, body = twilio.post(t, url, _params(t.call_sid, Digits="1"))
        assert status == 200 and _verbs(body) == ["Say", "Hangup"], url
    resp = app.test_client().post(f"{PUBLIC_BASE}/ivr/step?s=dial", data={"x": "1"},
                                  headers={"X-Twilio-Signature": twilio.signature(
                                      f"{PUBLIC_BASE}/ivr/step?s=dial", {"x": "1"})})
    assert resp.status_code == 200 and resp.mimetype == "text/xml"


def test_simulated_time_parameter_is_ignored_unless_enabled(app, twilio, db, clock):
    clock.set("2026-12-21T10:00")  # open
    t = twilio.call(caller="+33612345678", keys=["75"], at="2026-12-19T10:00",
                    referents=[Referent("accept")])
    assert t.dialled, "the `at` parameter must not change the clock in this configuration"
    app.config["SVI_ALLOW_SIMULATED_TIME"] = True
    t = twilio.call(caller="+33612345678", keys=["75"], at="2026-12-19T10:00")
    assert not t.dialled and "actuellement fermée" in heard(t)


def _status(sid, status, seq, duration=None):
    p = _params(sid, CallStatus=status, SequenceNumber=str(seq),
                Timestamp=f"Mon, 21 Dec 2026 09:{10 + seq:02d}:00 +0000")
    if duration is not None:
        p["CallDuration"] = str(duration)
    return p


@pytest.mark.parametrize("order", ["in_order", "reversed", "duplicated", "shuffled"])
def test_status_callbacks_are_idempotent_and_order_independent(app, twilio, db, clock, order):
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")],
                    send_status=False)
    clock.set("2026-12-21T10:15")  # the callbacks arrive after the instants they report
    callbacks = [_status(t.call_sid, "ringing", 1), _status(t.call_sid, "in-progress", 2),
                 _status(t.call_sid, "completed", 3, duration=187)]
    if order == "reversed":
        callbacks.reverse()
    elif order == "duplicated":
        callbacks = list(itertools.chain.from_iterable(zip(callbacks, callbacks))) + callbacks
    elif order == "shuffled":
        callbacks = callbacks * 2
        random.Random(7).shuffle(callbacks)
    for params in callbacks:
        status, body = twilio.post(t, f"{PUBLIC_BASE}/ivr/status", params)
        assert status == 200 and _verbs(body) == []
    call = call_record(db, t.call_sid)
    assert (call.status, call.duration_seconds, call.outcome) == ("completed", 187, Outcome.answered)
    assert call.ended_at.isoformat() == "2026-12-21T09:13:00+00:00"


def test_completed_callback_before_the_last_webhook_keeps_the_real_outcome(app, twilio, db):
    """Twilio may deliver 'completed' before the dial result: the stated outcome wins."""
    t = twilio.call(caller="+33612345678", keys=["75"], send_status=False,
                    referents=[Referent("accept")])
    twilio.post(t, f"{PUBLIC_BASE}/ivr/status", _status(t.call_sid, "completed", 3, duration=60))
    twilio.post(t, f"{PUBLIC_BASE}/ivr/status", _status(t.call_sid, "ringing", 1))
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.answered and call.status == "completed"


@pytest.mark.parametrize("dial_result_first", [False, True])
def test_wait_of_a_caller_who_hangs_up_while_it_rings_ignores_callback_order(
        app, twilio, db, clock, dial_result_first):
    """The wait ends at the hang-up (Twilio's timestamp), not when the Dial's result arrives."""
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("caller-hangup")],
                    send_status=False)
    action = next(v for v in ElementTree.fromstring(t.twiml[-1]) if v.tag == "Dial").get("action")
    hang_up = (f"{PUBLIC_BASE}/ivr/status", _status(t.call_sid, "completed", 3, duration=800))
    dial_result = (action, _params(t.call_sid, CallStatus="completed", DialCallStatus="canceled",
                                   DialCallSid=new_sid()))
    clock.set(clock.now + timedelta(minutes=13, seconds=5))  # 5 s after the hang-up at 10:13
    for url, params in (dial_result, hang_up) if dial_result_first else (hang_up, dial_result):
        assert twilio.post(t, url, params)[0] == 200
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.wait_seconds) == (Outcome.hung_up_ringing, 13 * 60)


def test_callbacks_for_a_call_never_answered_create_no_call(app, twilio, db):
    """Phantom calls: status, leg-status and whisper callbacks of an unknown CallSid are kept
    apart, never counted; if the call's first webhook turns up later, they are applied to it."""
    from sqlalchemy import func, select as sa_select
    from tracking.models import Call, UnmatchedCallback
    t = Transcript(call_sid=new_sid())
    leg = new_sid()
    assert twilio.post(t, f"{PUBLIC_BASE}/ivr/status", _status(t.call_sid, "completed", 2,
                                                                duration=4))[0] == 200
    assert twilio.post(t, f"{PUBLIC_BASE}/ivr/leg-status?s=dial&d=75&c={t.call_sid}",
                       _params(leg, CallStatus="ringing"))[0] == 200
    whisper = f"{PUBLIC_BASE}/ivr/whisper?s=dial&d=75&c={t.call_sid}"
    status, body = twilio.post(t, whisper, _params(leg, CallStatus="in-progress"))
    assert status == 200 and "Gather" in body
    assert db.scalar(sa_select(func.count()).select_from(Call)) == 0
    assert db.scalar(sa_select(func.count()).select_from(UnmatchedCallback)) == 3

    # The first webhook arrives late (it was journaled elsewhere): everything lands on the call.
    clock_now = app.config["CLOCK"]()
    twilio.post(t, VOICE, _params(t.call_sid, CallStatus="ringing",
                                  Timestamp=clock_now.strftime("%a, %d %b %Y %H:%M:%S +0000")))
    call = call_record(db, t.call_sid)
    assert call.status == "completed" and call.outcome is Outcome.abandoned
    assert call.outcome_inferred and [l.status for l in call.legs] == ["ringing"]
    assert db.scalar(sa_select(func.count()).select_from(UnmatchedCallback)) == 0


def test_every_answer_is_text_xml(app, twilio):
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    client = app.test_client()
    params = _params(new_sid())
    resp = client.post(VOICE, data=params, headers={"X-Twilio-Signature": twilio.signature(VOICE, params)})
    assert resp.mimetype == "text/xml"
    assert all(status == 200 for _, _, status in t.requests)


def test_repeated_leg_webhooks_land_on_one_leg(app, twilio, db):
    from tracking.models import CallLeg
    from sqlalchemy import select as sa_select
    t = twilio.call(caller="+33612345678", keys=["57"], referents=[Referent("accept")])
    leg_request = next((url, params) for url, params, _ in t.requests if "/ivr/whisper?" in url)
    for _ in range(2):  # Twilio retries the whisper request
        status, _ = twilio.post(t, *leg_request)
        assert status == 200
    db.expire_all()
    legs = db.scalars(sa_select(CallLeg)).all()
    assert len(legs) == 1 and legs[0].accepted_at is not None
