"""Whole calls through the signed webhooks, following TwiML as Twilio does: calls put through."""

from sqlalchemy import select

from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record, heard
from tracking.models import Call, CallEvent, CallLeg, Outcome


def test_open_metropolitan_departement_is_put_through(twilio, db, clock):
    clock.set("2026-12-21T10:00")  # Monday 10:00 in Paris
    t = twilio.call(caller="+33612345678", keys=["93", "1", "2"],
                    referents=[Referent("accept", talk_seconds=95)])

    assert "Vous avez choisi le département 93, Seine-Saint-Denis" in heard(t)
    assert t.dialled == [["+33199009301"]]  # 93 rings its lines one after the other
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.answered
    assert (call.departement_code, call.thematique) == ("93", "usage")
    assert call.answered_number == "+33199009301"
    assert call.talk_seconds == 95
    assert call.status == "completed"
    assert call.caller_masked == "+336••••••78"
    assert call.caller_hash and "612345678" not in call.caller_hash
    legs = db.scalars(select(CallLeg).where(CallLeg.call_id == call.id)).all()
    assert [(l.number, l.status, l.accepted_at is not None) for l in legs] == [
        ("+33199009301", "completed", True)]
    assert db.scalars(select(Call.call_sid)).all() == [t.call_sid]  # no phantom call from a leg
    steps = db.scalars(select(CallEvent.step).where(CallEvent.call_id == call.id,
                                                    CallEvent.kind == "step")).all()
    assert steps == ["welcome", "departement", "confirm", "motif", "dial"]


def test_whisper_tells_the_referent_who_calls_and_the_dial_is_bounded(twilio, clock):
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], referents=[Referent("accept")])
    dial_twiml = next(x for x in t.twiml if "<Dial" in x)
    assert 'timeLimit="900"' in dial_twiml and 'callerId="+33806000156"' in dial_twiml
    assert 'answerOnBridge="true"' in dial_twiml
    # 75 rings both lines at once, each with the whisper.
    assert t.dialled == [["+33199007501", "+33199007502"]]
    assert dial_twiml.count("/ivr/whisper?") == 2
    whisper = [line for line in t.lines if "côté référent" in line][0]
    assert "département 75, Paris" in whisper and "Motif : incident technique" in whisper
    assert "Tapez 1 pour prendre l'appel" in whisper


def test_corsica_is_typed_20_then_1_or_2(twilio, db):
    factories.departement(db, "2B", lines=["04 95 00 00 01"])
    t = twilio.call(caller="+33612345678", keys=["20", "2", "1"], referents=[Referent("accept")])
    assert "Pour la Corse-du-Sud, tapez 1. Pour la Haute-Corse, tapez 2." in heard(t)
    assert "département 2B, Haute-Corse" in heard(t)
    assert t.dialled == [["+33495000001"]]
    assert call_record(db, t.call_sid).departement_code == "2B"

    t = twilio.call(caller="+33612345678", keys=["20", "1", "1"], referents=[Referent("accept")])
    assert call_record(db, t.call_sid).departement_code == "2A"
    assert t.dialled == [["+33465712001"]]


def test_caller_can_correct_the_departement(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["92", "2", "93", "1", "9"],
                    referents=[Referent("accept")])
    assert "département 92, Hauts-de-Seine" in heard(t)
    assert "département 93, Seine-Saint-Denis" in heard(t)
    call = call_record(db, t.call_sid)
    assert (call.departement_code, call.thematique, call.outcome) == ("93", "autre", Outcome.answered)


def test_overseas_number_typed_locally_is_stored_with_its_region(twilio, db, clock):
    factories.departement(db, "971", lines=["0590 12 34 56"])
    clock.set("2026-12-21T15:00")  # 10:00 in Guadeloupe
    t = twilio.call(caller="+590690000001", keys=["971"], referents=[Referent("accept")])
    assert t.dialled == [["+590590123456"]]
    assert call_record(db, t.call_sid).outcome is Outcome.answered


def test_hidden_number_is_served_like_any_other(twilio, db):
    t = twilio.call(caller="anonymous", keys=["93"], referents=[Referent("accept")])
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.answered
    assert call.caller_hash is None and call.caller_masked == "masqué"


def test_returning_caller_is_offered_their_last_departement(twilio, db, clock):
    first = twilio.call(caller="+33611111111", keys=["57"], referents=[Referent("accept")])
    assert call_record(db, first.call_sid).departement_code == "57"

    again = twilio.call(caller="+33611111111", keys=["1"], referents=[Referent("accept")])
    assert "vous aviez demandé le département 57, Moselle" in heard(again)
    assert "Tapez le numéro de votre département, à deux chiffres" not in heard(again)
    assert again.dialled == [["+33353015701"]]
    assert call_record(db, again.call_sid).departement_code == "57"

    # Typing another département instead of 1 goes to that one, after confirmation.
    other = twilio.call(caller="+33611111111", keys=["75", "1"], referents=[Referent("accept")])
    assert "département 75, Paris" in heard(other)
    assert call_record(db, other.call_sid).departement_code == "75"

    # Another caller is not offered anything.
    stranger = twilio.call(caller="+33622222222", keys=["75"], referents=[Referent("accept")])
    assert "vous aviez demandé" not in heard(stranger)


def test_returning_offer_is_not_made_to_hidden_numbers(twilio, db):
    twilio.call(caller="anonymous", keys=["57"], referents=[Referent("accept")])
    t = twilio.call(caller="anonymous", keys=["57"], referents=[Referent("accept")])
    assert "vous aviez demandé" not in heard(t)


def test_caller_data_is_purged_after_the_retention_period(app, twilio, db, clock):
    clock.set("2025-01-06T10:00")
    old = twilio.call(caller="+33611111111", keys=["57"], referents=[Referent("accept")])
    clock.set("2026-12-21T10:00")
    recent = twilio.call(caller="+33611111111", keys=["1"], referents=[Referent("accept")])
    result = app.test_cli_runner().invoke(args=["tracking", "purge-callers"])
    assert "1 appel(s) anonymisé(s)" in result.output, result.output
    purged, kept = call_record(db, old.call_sid), call_record(db, recent.call_sid)
    assert (purged.caller_hash, purged.caller_masked) == (None, "purgé")
    assert purged.outcome is Outcome.answered and purged.departement_code == "57"  # still counted
    assert kept.caller_hash is not None and kept.caller_masked == "+336••••••11"
    events = db.scalars(select(CallEvent).where(CallEvent.call_id == purged.id)).all()
    assert events and all(e.data == {} and e.kind == "purged" for e in events)
    again = app.test_cli_runner().invoke(args=["tracking", "purge-callers"])
    assert "0 appel(s) anonymisé(s)" in again.output
