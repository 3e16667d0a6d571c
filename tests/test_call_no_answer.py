"""Nobody takes the call: sequential lines, voicemail, whisper declined, caller hangs up."""

from defusedxml import ElementTree
from sqlalchemy import select

from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record, heard
from tracking.models import CallLeg, Outcome


def test_nobody_answers_then_voicemail(twilio, db, clock):
    clock.set("2026-12-21T10:00")
    t = twilio.call(caller="+33612345678", keys=["93"], voicemail_seconds=40,
                    referents=[Referent("no-answer"), Referent("busy")])
    # Sequential: line 1, then line 2, then the apology and the voicemail.
    assert t.dialled == [["+33199009301"], ["+33261919302"]]
    text = heard(t)
    assert "Toutes nos lignes sont occupées." in text
    assert "Votre message a bien été enregistré." in text
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.voicemail
    assert call.recording_seconds == 40
    assert call.wait_seconds is not None and call.wait_seconds >= 0
    legs = db.scalars(select(CallLeg.status).where(CallLeg.call_id == call.id).order_by(CallLeg.id)).all()
    assert legs == ["no-answer", "busy"]


def test_nobody_answers_without_voicemail_points_to_the_form(twilio, db):
    factories.departement(db, "57", voicemail=False)
    t = twilio.call(caller="+33612345678", keys=["57"], referents=[Referent("no-answer")])
    text = heard(t)
    assert "Toutes nos lignes sont occupées." in text
    assert "Vous pouvez faire votre demande en ligne, à l'adresse assistance.example.gouv.fr." in text
    assert "laisser un message" not in text
    assert call_record(db, t.call_sid).outcome is Outcome.no_answer


def test_an_empty_voicemail_is_told_and_points_to_the_form(twilio, db):
    """Twilio skips <Record>'s action on an empty recording: the next verb must carry on."""
    t = twilio.call(caller="+33612345678", keys=["57"], referents=[Referent("no-answer")],
                    voicemail_seconds=0)
    recording = next(doc for doc in t.twiml if "<Record" in doc)
    assert [verb.tag for verb in ElementTree.fromstring(recording)][-2:] == ["Record", "Redirect"]
    text = heard(t)
    assert "Nous n'avons pas reçu de message." in text
    assert "Vous pouvez faire votre demande en ligne" in text.split("Nous n'avons pas reçu")[1]
    assert call_record(db, t.call_sid).outcome is Outcome.no_answer


def test_personal_voicemail_of_a_referent_is_not_an_answer(twilio, db):
    """The whisper is not accepted (a voicemail picked up): try the next line, then voicemail."""
    t = twilio.call(caller="+33612345678", keys=["93"], voicemail_seconds=12,
                    referents=[Referent("decline"), Referent("accept", talk_seconds=30)])
    assert t.dialled == [["+33199009301"], ["+33261919302"]]
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.answered
    assert call.answered_number == "+33261919302" and call.talk_seconds == 30
    accepted = db.scalars(select(CallLeg.accepted_at).where(CallLeg.call_id == call.id)
                          .order_by(CallLeg.id)).all()
    assert accepted[0] is None and accepted[1] is not None


def test_whisper_declined_on_every_line_leads_to_voicemail(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["57"], voicemail_seconds=8,
                    referents=[Referent("decline")])
    assert any("messagerie du référent, appel non pris" in line for line in t.lines)
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.voicemail and call.answered_number is None


def test_caller_hangs_up_while_it_rings(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["57"], referents=[Referent("caller-hangup")])
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.hung_up_ringing
    assert call.status == "completed" and call.ended_at is not None


def test_caller_hangs_up_in_the_menu(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["57"], hang_up_after=2)
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.abandoned
    assert call.departement_code == "57"  # the département typed before leaving is kept
