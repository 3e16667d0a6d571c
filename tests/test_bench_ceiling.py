"""The benchmark's ceiling server does the real step's signature check and durable write, only."""

from __future__ import annotations

from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bench import ceiling
from bench.bare import TWIML
from bench.load import incoming_call_params
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests.helpers import call_record
from tracking.models import Call, CallEvent


def test_ceiling_commits_each_signed_call_and_refuses_a_forged_one(app, db):
    client = ceiling.reduce_to_write(app).test_client()
    sid = "CA" + "c" * 32
    params = incoming_call_params(sid, "+33612345678")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + "/ivr/voice", params)

    answer = client.post("/ivr/voice", data=params, headers={"X-Twilio-Signature": signature})

    assert answer.status_code == 200 and answer.get_data(as_text=True) == TWIML
    call = call_record(db, sid)
    assert (call.step, call.caller_masked, call.status) == ("departement", "+336••••••78",
                                                            "in-progress")
    assert db.scalar(select(func.count()).select_from(CallEvent)
                     .where(CallEvent.call_id == call.id)) == 1

    forged = incoming_call_params("CA" + "f" * 32, "+33612345678")
    assert client.post("/ivr/voice", data=forged,
                       headers={"X-Twilio-Signature": signature}).status_code == 403
    assert db.scalar(select(func.count()).select_from(Call)) == 1
