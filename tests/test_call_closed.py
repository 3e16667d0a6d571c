"""Calls that are not put through: hours, timezones, holidays, closures, no phone assistance."""

from datetime import date

import pytest

from directory.operations import set_worked_holiday
from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record, heard
from tracking.models import Outcome


@pytest.fixture
def reunion_open(db):
    return factories.departement(db, "974", phone_assistance=True, lines=["0262 99 00 01"], voicemail=False)


def test_974_closed_while_paris_is_open(twilio, db, clock, reunion_open):
    clock.set("2026-12-21T10:00")  # Paris 10:00 open; Réunion 13:00, lunch break
    t = twilio.call(caller="+262692000001", keys=["974"])
    assert t.dialled == []
    assert "L'assistance du département 974, La Réunion, est actuellement fermée." in heard(t)
    assert "Elle rouvrira aujourd'hui à 14 heures." in heard(t)
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.closed_reason) == (Outcome.out_of_hours, "outside_hours")


def test_974_open_while_paris_is_closed(twilio, db, clock, reunion_open):
    clock.set("2026-12-21T08:00")  # Paris 08:00 closed; Réunion 11:00 open
    t = twilio.call(caller="+262692000001", keys=["974"], referents=[Referent("accept")])
    assert t.dialled == [["+262262990001"]]
    assert call_record(db, t.call_sid).outcome is Outcome.answered

    t = twilio.call(caller="+33612345678", keys=["75"])
    assert t.dialled == []
    assert "Elle rouvrira aujourd'hui à 9 heures 30." in heard(t)


def test_26_december_is_a_holiday_in_moselle_and_alsace_only(twilio, db, clock):
    factories.departement(db, "67", lines=["03 88 00 00 01"])
    clock.set("2025-12-26T10:00")  # a Friday
    for code, name in (("57", "Moselle"), ("67", "Bas-Rhin")):
        t = twilio.call(caller="+33612345678", keys=[code])
        assert t.dialled == []
        assert f"{name}, est fermée aujourd'hui, jour férié : Saint-Étienne." in heard(t)
        # Closed on 26 Dec, weekend next: reopens Monday 29.
        assert "Elle rouvrira lundi 29 décembre à 9 heures 30." in heard(t)
        call = call_record(db, t.call_sid)
        assert (call.outcome, call.closed_reason) == (Outcome.out_of_hours, "holiday")
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    assert t.dialled and call_record(db, t.call_sid).outcome is Outcome.answered


def test_closed_message_says_the_hours_in_natural_french(twilio, clock):
    clock.set("2026-12-19T10:00")  # Saturday
    t = twilio.call(caller="+33612345678", keys=["75"])
    assert ("Elle vous répond du lundi au vendredi, de 9 heures 30 à 11 heures 30 "
            "et de 14 heures à 16 heures 30.") in heard(t)
    assert "Elle rouvrira lundi 21 décembre à 9 heures 30." in heard(t)


def test_lundi_de_pentecote_closed_unless_declared_worked(twilio, db, clock):
    clock.set("2026-05-25T10:00")
    t = twilio.call(caller="+33612345678", keys=["75"])
    assert "jour férié : Lundi de Pentecôte" in heard(t) and t.dialled == []

    set_worked_holiday(db, "Lundi de Pentecôte")
    db.commit()
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    assert t.dialled and call_record(db, t.call_sid).outcome is Outcome.answered


def test_exceptional_closure_tells_its_reason_and_reopening(twilio, db, clock):
    factories.closure(db, "93", date(2026, 12, 21), date(2026, 12, 23), "séminaire de l'équipe")
    clock.set("2026-12-22T10:00")
    t = twilio.call(caller="+33612345678", keys=["93"])
    assert "est exceptionnellement fermée : séminaire de l'équipe." in heard(t)
    assert "Elle rouvrira jeudi 24 décembre à 9 heures 30." in heard(t)
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.closed_reason) == (Outcome.out_of_hours, "closure")


def test_departement_without_phone_assistance_points_to_form_and_email(twilio, db):
    t = twilio.call(caller="+262692000001", keys=["974"])
    text = heard(t)
    assert "ne propose pas d'assistance téléphonique" in text
    assert "à l'adresse assistance.example.gouv.fr/974" in text
    assert "écrire à l'adresse assistance-974@example.gouv.fr" in text
    assert t.dialled == [] and "<Hangup" in t.twiml[-1]
    assert call_record(db, t.call_sid).outcome is Outcome.no_phone_assistance


def test_closed_departement_with_voicemail_records_a_message(twilio, db, clock):
    clock.set("2026-12-19T10:00")  # Saturday; 93 has voicemail in the demo
    t = twilio.call(caller="+33612345678", keys=["93"], voicemail_seconds=25)
    assert "Vous pouvez laisser un message après le bip" in heard(t)
    assert "Votre message a bien été enregistré." in heard(t)
    call = call_record(db, t.call_sid)
    # Out of hours stays out of hours (excluded from the answer rate), with its recording.
    assert call.outcome is Outcome.out_of_hours
    assert call.recording_seconds == 25 and call.recording_url.startswith("https://api.twilio.com/")


def test_three_invalid_entries_end_with_the_form(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["99", "7", "975"])
    text = heard(t)
    assert text.count("Nous n'avons pas reconnu ce numéro de département.") == 2
    assert "Nous n'avons pas pu identifier votre département." in text
    assert "formulaire d'assistance, à l'adresse assistance.example.gouv.fr" in text
    assert t.dialled == []
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.invalid_departement and call.departement_code is None


def test_silence_is_reprompted_then_counts_as_an_attempt(twilio, db):
    t = twilio.call(caller="+33612345678", keys=[None, None, "93"], referents=[Referent("accept")])
    assert heard(t).count("Nous n'avons reçu aucune saisie.") == 2
    assert call_record(db, t.call_sid).outcome is Outcome.answered


def test_wrong_key_in_motif_menu_is_reprompted(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["75", "1", "7", "3"], referents=[Referent("accept")])
    assert "Ce choix n'est pas valide." in heard(t)
    assert call_record(db, t.call_sid).thematique == "habilitations"
