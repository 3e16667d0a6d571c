"""Nobody answered during opening hours: the caller asks to be called back, on the number they
call from or on one they type (read back, confirmed), and a callback ticket is created — once,
even when Twilio retries or the record waits in the journal. All through signed webhooks."""

from __future__ import annotations

import json
import logging
import stat
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from core.db import make_engine
from ivr.simulator import Referent
from tests import factories
from tests.helpers import call_record, heard
from tests.webclient import form_fields
from tickets.models import TicketKind
from tracking.journal import journal_of
from tracking.models import CallEvent, Outcome

NOBODY = Referent("no-answer")
#: Département 93 (two lines rung one after the other), confirmed, motif « incident technique ».
TO_93 = ["93", "1", "1"]


def _stored_text(db, call) -> str:
    """Everything kept of the call's webhooks, as text."""
    return json.dumps([e.data for e in db.scalars(select(CallEvent).where(
        CallEvent.call_id == call.id))], ensure_ascii=False)


def test_a_caller_is_called_back_on_the_number_they_call_from(twilio, db, clock):
    clock.set("2026-12-21T10:00")  # Monday, open
    t = twilio.call(caller="+33612345678", keys=TO_93 + ["1"], referents=[NOBODY, NOBODY])
    assert t.dialled == [["+33199009301"], ["+33261919302"]]
    text = heard(t)
    assert ("Toutes nos lignes sont occupées. | Nous pouvons vous rappeler. | Pour être rappelé "
            "au numéro d'où vous appelez, tapez 1. | Pour indiquer un numéro où vous rappeler, "
            "tapez 2. | Pour laisser un message, tapez 3.") in text
    assert t.heard[-1] == ("Votre demande de rappel est enregistrée. Un référent du département "
                           "Seine-Saint-Denis vous rappellera dès que possible. Au revoir.")
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.no_answer  # a callback request is not an answer
    [ticket] = factories.tickets(db)
    assert (ticket.kind, ticket.callback_number, ticket.call_id) == (
        TicketKind.callback, "+33612345678", call.id)
    assert ticket.departement_code == "93" and ticket.caller_masked == "+336••••••78"
    assert ticket.due_at is not None and ticket.number.startswith("T-2026-")


def test_another_number_is_read_back_and_a_wrong_entry_gets_another_chance(
        app, twilio, db, clock, caplog):
    caplog.set_level(logging.DEBUG)
    clock.set("2026-12-21T10:00")
    keys = TO_93 + ["2", "123", "06 12", "0612345678", "2", "0698765432#", "1"]
    t = twilio.call(caller="+33612345678", keys=[k.replace(" ", "") for k in keys])
    text = heard(t)
    # Two numbers too short: each time the caller is told, and asked again.
    asked = "Tapez le numéro de téléphone où vous rappeler, à dix chiffres, puis la touche dièse."
    assert text.count("Ce numéro de téléphone n'est pas valide.") == 2
    assert text.count(asked) == 4  # first time, twice after a bad entry, once after « 2 »
    assert ("Vous avez indiqué le zéro 6, 12, 34, 56, 78. Si c'est exact, tapez 1. Pour le "
            "corriger, tapez 2.") in text
    assert "Vous avez indiqué le zéro 6, 98, 76, 54, 32." in text
    assert t.heard[-1].startswith("Votre demande de rappel est enregistrée.")
    [ticket] = factories.tickets(db)
    assert ticket.callback_number == "+33698765432"
    # Personal data: the typed number is stored in clear in the ticket only — not in the call's
    # events, not in the URLs Twilio is given (access logs), not in the application's logs.
    call = call_record(db, t.call_sid)
    for clear in ("0698765432", "698765432", "0612345678"):
        assert clear not in _stored_text(db, call)
        assert not any(clear in url for url, _, _ in t.requests)
        assert clear not in caplog.text
    assert "+33698765432" not in caplog.text and "+336••••••32" in caplog.text
    assert "0698••••32" in _stored_text(db, call)  # what was typed, masked like a caller
    assert call.outcome is Outcome.no_answer


def test_a_hidden_caller_is_asked_to_type_a_number(twilio, db, clock):
    clock.set("2026-12-21T10:00")
    # « 1 » is not offered to a hidden number: refused, then « 2 » and a number of Guadeloupe
    # typed as dialled in France, for a caller of 93.
    t = twilio.call(caller="anonymous", keys=TO_93 + ["1", "2", "0590123456", "1"])
    text = heard(t)
    assert "au numéro d'où vous appelez" not in text
    assert ("Nous pouvons vous rappeler. | Votre numéro est masqué : nous ne pouvons vous "
            "rappeler qu'au numéro que vous nous indiquerez. | Pour indiquer un numéro où vous "
            "rappeler, tapez 2. | Pour laisser un message, tapez 3.") in text
    assert "Ce choix n'est pas valide." in text
    assert "Vous avez indiqué le zéro 5, 90, 12, 34, 56." in text
    [ticket] = factories.tickets(db)
    assert ticket.callback_number == "+590590123456" and ticket.caller_masked == "masqué"


def test_a_caller_calling_from_a_sip_address_is_treated_as_hidden(twilio, db):
    t = twilio.call(caller="sip:agent@pbx.example.gouv.fr", keys=TO_93 + ["1"])
    assert "au numéro d'où vous appelez" not in heard(t)
    assert "Ce choix n'est pas valide." in heard(t)
    assert factories.tickets(db) == []


def test_no_number_after_every_attempt_leads_to_the_voicemail(twilio, db):
    t = twilio.call(caller="+33612345678", keys=TO_93 + ["2", "1", "0899123456", None],
                    voicemail_seconds=9)
    text = heard(t)
    # A premium-rate number is refused like any invalid one; after three entries, the message.
    assert text.count("Ce numéro de téléphone n'est pas valide.") == 2
    assert "Nous n'avons reçu aucune saisie." not in text  # the third one ends the questions
    assert "Nous n'avons pas pu enregistrer de numéro de rappel. | Vous pouvez laisser un " \
           "message après le bip" in text
    assert [t.kind for t in factories.tickets(db)] == [TicketKind.voicemail]
    assert call_record(db, t.call_sid).outcome is Outcome.voicemail


def test_no_confirmation_is_no_callback(twilio, db):
    """The number read back is never confirmed (silence, a wrong key, silence): no ticket."""
    t = twilio.call(caller="+33612345678", keys=TO_93 + ["2", "0612345678", None, "7", None])
    text = heard(t)
    assert text.count("Vous avez indiqué le zéro 6, 12, 34, 56, 78.") == 3
    assert "Nous n'avons reçu aucune saisie." in text and "Ce choix n'est pas valide." in text
    assert "Nous n'avons pas pu enregistrer de numéro de rappel." in text
    assert [t.kind for t in factories.tickets(db)] == []  # no message left either (voicemail of 0 s)


def test_no_callback_is_offered_when_the_departement_is_closed(twilio, db, clock):
    clock.set("2026-12-19T10:00")  # Saturday
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], voicemail_seconds=5)
    assert "Nous pouvons vous rappeler." not in heard(t)
    assert [t.kind for t in factories.tickets(db)] == [TicketKind.voicemail]


def test_without_voicemail_the_offer_has_no_message_option(twilio, db):
    """2A takes no voicemail: callback only; silence ends with the form."""
    t = twilio.call(caller="+33612345678", keys=["20", "1", "1", "1", None])
    text = heard(t)
    assert "Pour être rappelé au numéro d'où vous appelez, tapez 1." in text
    assert "Pour laisser un message" not in text
    assert "Vous pouvez faire votre demande en ligne" in text
    assert factories.tickets(db) == []


def test_a_retried_confirmation_makes_one_ticket(twilio, db):
    t = twilio.call(caller="+33612345678", keys=TO_93 + ["2", "0612345678", "1"])
    url, params, _ = t.requests[-2]  # the confirmation (the last request is the status)
    assert params.get("Digits") == "1"
    status, body = twilio.post(t, url, params)  # Twilio retries it (a timeout on its side)
    assert status == 200 and "Votre demande de rappel est enregistrée" in body
    assert [(t.kind, t.callback_number) for t in factories.tickets(db)] == [
        (TicketKind.callback, "+33612345678")]


def test_a_callback_confirmed_while_the_database_is_down_is_journaled_then_ticketed(
        app, twilio, db):
    t, pause = twilio.begin(caller="+33612345678")
    for digits in TO_93 + ["2", "0612345678"]:
        t, pause = twilio.answer(pause, digits, referent=NOBODY)
    assert "Vous avez indiqué le zéro 6, 12, 34, 56, 78." in heard(t)
    journal = journal_of(app)
    working = app.extensions["svi.voice_sessionmaker"], journal.sessions
    broken = sessionmaker(make_engine(
        "postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1"))
    app.extensions["svi.voice_sessionmaker"] = journal.sessions = broken
    try:
        t, pause = twilio.answer(pause, "1", referent=NOBODY)
        # The caller is answered all the same; the record waits in the journal.
        assert pause is None and "Votre demande de rappel est enregistrée" in heard(t)
        assert [e["kind"] for e in journal.pending()][-1] == "step"
        assert factories.tickets(db) == []
        # The number is personal data: the journal is readable by the service's user only.
        assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    finally:
        app.extensions["svi.voice_sessionmaker"], journal.sessions = working
    assert journal.wait_until_empty(timeout=30)
    [ticket] = factories.tickets(db)
    assert ticket.callback_number == "+33612345678"


def test_a_tampered_number_in_the_url_gets_the_apology(app, twilio, db):
    t, pause = twilio.begin(caller="+33612345678")
    for digits in TO_93 + ["2", "0612345678"]:
        t, pause = twilio.answer(pause, digits, referent=NOBODY)
    url = urlsplit(pause.action)
    query = dict(parse_qsl(url.query))
    assert "0612345678" not in pause.action and "612345678" not in query["n"]
    query["n"] = ("A" if query["n"][0] != "A" else "B") + query["n"][1:]
    forged = urlunsplit(url._replace(query=urlencode(query)))
    status, body = twilio.post(t, forged, dict(pause.base, Digits="1"))
    assert status == 200 and "difficulté technique" in body
    assert factories.tickets(db) == []


def test_the_preview_plays_the_callback_offer(admin):
    page = admin.get("/apercu?departement=93&day=2026-12-21&at=10:00&caller=masque"
                     "&thematique=&referent=no-answer&after=autre&voicemail=0"
                     ).get_data(as_text=True)
    assert "Votre numéro est masqué" in page
    assert "Vous avez indiqué le zéro 1, 99, zéro zéro, zéro zéro, zéro 2." in page
    assert "Votre demande de rappel est enregistrée." in page
    page = admin.get("/apercu?departement=93&day=2026-12-21&at=10:00&caller=nouveau"
                     "&thematique=&referent=no-answer&after=rappel&voicemail=0"
                     ).get_data(as_text=True)
    assert "Pour être rappelé au numéro d&#39;où vous appelez, tapez 1." in page


def test_the_simulator_reaches_the_callback_steps(admin, db):
    def form(action):
        page = admin.get("/simulateur").get_data(as_text=True)
        start = page.index(f'action="{action}"')
        return form_fields(page[page.rindex("<form", 0, start):])

    fields = form("/simulateur/appeler")
    fields["referent"] = "no-answer"
    assert admin.post("/simulateur/appeler", data=fields).status_code == 302
    for digits in ("93#", "1", "1", "2", "0612345678#", "1"):
        fields = form("/simulateur/touches")
        fields["digits"] = digits
        assert admin.post("/simulateur/touches", data=fields).status_code == 302
    page = admin.get("/simulateur").get_data(as_text=True)
    assert "Vous avez indiqué le zéro 6, 12, 34, 56, 78." in page
    assert "Votre demande de rappel est enregistrée." in page and "Appel terminé" in page
    assert factories.tickets(db) == []  # a test call: no ticket, no email to the referents


# --- the pure pieces ---------------------------------------------------------------------------

@pytest.mark.parametrize("typed, region, expected", [
    ("0612345678", "FR", "+33612345678"),
    ("0199001234", "FR", "+33199001234"),
    ("0590123456", "FR", "+590590123456"),   # Guadeloupe, typed in 93 as dialled in France
    ("0692123456", "RE", "+262692123456"),
    ("0612345678", "RE", "+33612345678"),    # a metropolitan mobile, typed in La Réunion
    ("0033612345678", "FR", "+33612345678"),
    ("00442079460000", "FR", "+442079460000"),
    ("0800123456", "FR", "+33800123456"),    # free for the service to call
    ("0899123456", "FR", None),              # premium rate
    ("0806000156", "FR", None),              # shared cost (the national number itself)
    ("061234567", "FR", None), ("06123456789", "FR", None), ("3949", "FR", None),
    ("", "FR", None), (None, "FR", None), ("06*2345678", "FR", None), ("٠٦١٢٣٤٥٦٧٨", "FR", None),
])
def test_callback_numbers_typed_in_french_formats(typed, region, expected):
    from callflows.keypad import parse_callback_number
    assert parse_callback_number(typed, region) == expected


def test_numbers_are_read_back_pair_by_pair():
    from prompts.french import phone_number
    assert phone_number("+33612345678") == "zéro 6, 12, 34, 56, 78"
    assert phone_number("+33100000000") == "zéro 1, zéro zéro, zéro zéro, zéro zéro, zéro zéro"
    assert phone_number("+590590123456") == "zéro 5, 90, 12, 34, 56"
    assert phone_number("+442079460000") == "plus 44, 20, 79, 46, zéro zéro, zéro zéro"


def test_the_caller_number_is_offered_only_when_it_can_be_called_back():
    from callflows.keypad import callable_caller
    assert callable_caller("+33612345678") == "+33612345678"
    for hidden in (None, "", "anonymous", "sip:agent@pbx.example.gouv.fr", "+33899123456",
                   "+3361234", "0612345678"):
        assert callable_caller(hidden) is None, hidden


def test_a_flow_with_an_unknown_condition_or_callback_source_is_refused(tmp_path):
    from callflows import definition
    bad = tmp_path / "flow.yaml"
    bad.write_text("""
start: offer
steps:
  offer:
    type: menu
    prompts: [callback_intro, {prompt: callback_hidden, when: moon_is_full}]
    options:
      "1": {prompt: callback_offer_caller, when: caller_numbr, next: back}
    on_timeout: back
    on_failure: back
  back: {type: callback, number: neighbour, prompt: callback_registered, otherwise: ask}
  ask: {type: ask_number, prompt: callback_ask_number, invalid_prompt: callback_invalid_number,
        on_valid: check, on_failure: back}
  check: {type: confirm_number, prompt: callback_confirm, confirm_key: "12", retry_key: "2",
          on_confirm: back, on_retry: ask, on_failure: back}
""", encoding="utf-8")
    with pytest.raises(definition.FlowError) as err:
        definition.load(bad)
    message = str(err.value)
    for expected in ("étape offer : condition « when » inconnue 'moon_is_full'",
                     "condition « when » inconnue 'caller_numbr'",
                     "étape back : « number » vaut caller ou typed",
                     "étape check : « confirm_key » : une seule touche"):
        assert expected in message


def test_a_sealed_number_never_shows_and_cannot_be_altered():
    from callflows.actions import CallState
    from ivr import state as url_state
    state = CallState("callback_confirm", departement="93", number="+33612345678")
    params = url_state.encode(state, "clé")
    assert "612345678" not in repr(params)
    assert url_state.decode(params, "clé") == state
    assert url_state.encode(state, "clé")["n"] != params["n"]  # a fresh nonce each time
    for key, value in (("clé", ("A" if params["n"][0] != "A" else "B") + params["n"][1:]),
                       ("autre clé", params["n"]), ("clé", "court"), ("clé", "%%%")):
        with pytest.raises(url_state.BadState):
            url_state.decode({**params, "n": value}, key)
