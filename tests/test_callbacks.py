"""Callbacks are validated, not trusted; any order gives the same record; a finished call only
moves forward; a technical failure is its own outcome. All through signed webhooks."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

import openpyxl
import pytest
from defusedxml import ElementTree
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from core.db import make_engine
from ivr.simulator import Referent, Transcript, new_sid
from tests.conftest import PUBLIC_BASE
from tests.helpers import call_record, heard
from tracking.exports import export_workbook
from tracking.journal import journal_of
from tracking.models import Call, CallEvent, Outcome, UnmatchedCallback

VOICE, STATUS = f"{PUBLIC_BASE}/ivr/voice", f"{PUBLIC_BASE}/ivr/status"


def _params(sid, **extra):
    return {"CallSid": sid, "From": "+33612345678", "To": "+33806000156",
            "AccountSid": "AC" + "0" * 32, **extra}


def _rfc2822(at: datetime, zone: str = "+0000") -> str:
    return at.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S ") + zone


def _dial_action(t: Transcript) -> str:
    return next(v for v in ElementTree.fromstring(t.twiml[-1]) if v.tag == "Dial").get("action")


# --- 3. validated, not trusted ------------------------------------------------------------------

def test_absurd_durations_are_ignored_and_the_rest_still_applied(app, twilio, db, clock):
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], send_status=False,
                    referents=[Referent("accept")])
    # The dial result was posted by the emulator; replay it with an absurd talk time.
    dial = next((url, p) for url, p, _ in t.requests if p.get("DialCallStatus") == "completed")
    assert twilio.post(t, dial[0], dict(dial[1], DialCallDuration="1" + "0" * 12))[0] == 200
    for duration in ("1" + "0" * 12, "²", "-5", "12.5", "٣"):
        status, body = twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed",
                                                      CallDuration=duration))
        assert status == 200 and ElementTree.fromstring(body).tag == "Response"
    call = call_record(db, t.call_sid)
    assert (call.status, call.outcome, call.duration_seconds) == ("completed", Outcome.answered, None)
    assert call.talk_seconds == 60 and call.ended_at is not None
    twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed", CallDuration="95"))
    assert call_record(db, t.call_sid).duration_seconds == 95


@pytest.mark.parametrize("stamp, expected", [
    ("Mon, 21 Dec 2026 09:13:00 -0000", "2026-12-21T09:13:00+00:00"),   # zone unknown: UTC
    ("Mon, 21 Dec 2026 09:13:00", "2026-12-21T09:13:00+00:00"),         # no zone at all
    ("Mon, 21 Dec 2026 10:13:00 +0100", "2026-12-21T09:13:00+00:00"),
    ("hier soir", "2026-12-21T09:20:00+00:00"),                          # garbage: receipt time
    ("Mon, 21 Dec 1970 09:13:00 +0000", "2026-12-21T09:20:00+00:00"),   # absurd: receipt time
    ("Mon, 32 Dec 2026 99:13:00 +9999", "2026-12-21T09:20:00+00:00"),
])
def test_callback_timestamps_of_any_shape(app, twilio, db, clock, stamp, expected):
    t = twilio.call(caller="+33612345678", keys=["75"], send_status=False,
                    referents=[Referent("accept")])
    clock.set("2026-12-21T10:20")  # received after the instant it reports
    status, _ = twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed",
                                               CallDuration="30", Timestamp=stamp))
    assert status == 200
    call = call_record(db, t.call_sid)
    assert call.status == "completed" and call.ended_at.isoformat() == expected


def test_long_sip_caller_and_strange_digits(app, twilio, db):
    sip = "sip:" + "agent.departemental" * 3 + "@pbx.example.gouv.fr"
    t = twilio.call(caller=sip, keys=["²³", "75", "1", "1"], referents=[Referent("accept")])
    assert "Nous n'avons pas reconnu ce numéro de département" in heard(t)
    assert t.dialled == [["+33199007501", "+33199007502"]]
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.answered and len(call.caller_masked) <= 16
    assert call.caller_masked.startswith("sip:") and sip not in call.caller_masked
    # Same caller again: recognised by its hash although the number is long.
    again = twilio.call(caller=sip, keys=["1", "1"], referents=[Referent("accept")])
    assert "vous aviez demandé le département 75" in heard(again)


def test_malformed_call_sids_are_answered_but_not_recorded(app, twilio, db):
    client = app.test_client()
    for sid in ("", "CA" + "f" * 200, "CA'; DROP TABLE calls;--", "CA\u00e9" + "0" * 31):
        params = _params(sid)
        resp = client.post(VOICE, data=params,
                           headers={"X-Twilio-Signature": twilio.signature(VOICE, params)})
        assert resp.status_code == 200 and b"<Gather" in resp.data
    assert db.scalar(select(func.count()).select_from(Call)) == 0


# --- 4. every pair of callbacks commutes ----------------------------------------------------------

def _record(db, sid):
    call = call_record(db, sid)
    start = call.started_at
    rel = lambda at: None if at is None else (at - start).total_seconds()
    legs = tuple(sorted((l.status, rel(l.ended_at), l.duration_seconds, l.accepted_at is not None)
                        for l in call.legs))
    events = db.scalar(select(func.count()).select_from(CallEvent).where(CallEvent.call_id == call.id))
    return (call.status, call.outcome, call.outcome_inferred, call.wait_seconds, call.talk_seconds,
            call.duration_seconds, rel(call.ended_at), rel(call.dial_ended_at), call.step,
            call.recording_url is not None, legs, events)


@pytest.mark.parametrize("dial_status", ["no-answer", "busy", "completed-declined", "canceled"])
def test_the_final_record_is_the_same_in_every_order(app, twilio, db, clock, dial_status):
    """The dial result, the call's status and the leg's statuses, in every order."""
    records = set()
    for order in itertools.permutations(range(4)):
        clock.set("2026-12-21T10:00")
        t = twilio.call(caller="+33612345678", keys=["57", "1", "1"], send_status=False,
                        referents=[Referent("caller-hangup")])  # stops at <Dial>
        leg = new_sid()
        leg_url = f"{PUBLIC_BASE}/ivr/leg-status?s=dial&d=57&c={t.call_sid}"
        start = clock.now
        leg_final = "completed" if dial_status == "completed-declined" else dial_status
        callbacks = [
            (_dial_action(t), _params(t.call_sid, CallStatus="in-progress", DialCallSid=leg,
                                      DialCallStatus=dial_status.split("-")[0],
                                      DialCallDuration="4"), start + timedelta(seconds=150)),
            (STATUS, _params(t.call_sid, CallStatus="completed", CallDuration="170",
                             Timestamp=_rfc2822(start + timedelta(seconds=170))), None),
            (leg_url, _params(leg, CallStatus="ringing", To="+33353015701",
                              Timestamp=_rfc2822(start + timedelta(seconds=5))), None),
            (leg_url, _params(leg, CallStatus=leg_final.replace("canceled", "no-answer"),
                              To="+33353015701", CallDuration="4",
                              Timestamp=_rfc2822(start + timedelta(seconds=149))), None),
        ]
        for i in order:
            url, params, at = callbacks[i]
            clock.set(at or start + timedelta(seconds=172))  # callbacks carry their own time
            assert twilio.post(t, url, params)[0] == 200
        records.add(_record(db, t.call_sid))
    assert len(records) == 1, "\n".join(map(repr, records))
    (record,) = records
    assert record[0] == "completed" and record[3] == 150  # waited until the dial gave up


def test_stated_outcomes_keep_their_precedence_whatever_the_order(app, twilio, db, clock):
    """Nobody answered, then a voicemail: the voicemail stands, even if its webhook came first."""
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], voicemail_seconds=20,
                    referents=[Referent("no-answer")])
    assert call_record(db, t.call_sid).outcome is Outcome.voicemail
    dial_result = next((url, p) for url, p, _ in t.requests if p.get("DialCallStatus"))
    assert twilio.post(t, *dial_result)[0] == 200  # the no-answer result replayed late
    call = call_record(db, t.call_sid)
    assert call.outcome is Outcome.voicemail and call.recording_url


# --- 9. a finished call only moves forward -------------------------------------------------------

def test_replaying_the_first_webhooks_of_a_finished_call_does_not_rewind_it(app, twilio, db):
    t = twilio.call(caller="+33612345678", keys=["93", "1", "2"], referents=[Referent("accept")])
    before = _record(db, t.call_sid)
    call = call_record(db, t.call_sid)
    assert (call.step, call.departement_code, call.thematique) == ("dial", "93", "usage")
    for url, params, _ in t.requests[:4]:  # the welcome, the département, the confirmation…
        assert twilio.post(t, url, params)[0] == 200
    call = call_record(db, t.call_sid)
    assert (call.step, call.departement_code, call.thematique, call.outcome) == \
        ("dial", "93", "usage", Outcome.answered)
    assert _record(db, t.call_sid)[:-1] == before[:-1]  # only the events were added


# --- 5. technical failures ------------------------------------------------------------------------

def test_a_call_that_heard_the_technical_apology_is_a_technical_failure(app, twilio, db, clock,
                                                                        tmp_path):
    t = Transcript(call_sid=new_sid())
    status, body = twilio.post(t, VOICE, _params(t.call_sid))
    action = ElementTree.fromstring(body).find("Gather").get("action")
    _, body = twilio.post(t, action, _params(t.call_sid, Digits="93"))
    action = ElementTree.fromstring(body).find("Gather").get("action")
    _, body = twilio.post(t, action, _params(t.call_sid, Digits="1"))  # confirmed: 93
    motif_action = ElementTree.fromstring(body).find("Gather").get("action")

    working = app.extensions["svi.voice_sessionmaker"]
    broken = make_engine("postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1")
    app.extensions["svi.voice_sessionmaker"] = sessionmaker(broken)
    app.extensions["svi.directory_cache"]._version = None  # nothing cached to route from
    app.extensions["svi.directory_cache"].copy = None  # nor a copy of it on disk
    status, body = twilio.post(t, motif_action, _params(t.call_sid, Digits="2"))
    assert status == 200 and "difficulté technique" in body
    app.extensions["svi.voice_sessionmaker"] = working
    assert journal_of(app).wait_until_empty(timeout=20)
    twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed", CallDuration="40"))
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.outcome_inferred, call.departement_code) == (Outcome.error, False, "93")

    path = tmp_path / "93.xlsx"
    export_workbook(db, departement="93", start=date(2026, 10, 1), end=date(2026, 12, 31), path=path)
    rows = list(openpyxl.load_workbook(path)["Historique des sollicitations"].iter_rows(values_only=True))
    assert rows[1][7] == "erreur technique"
    results = [r for r in openpyxl.load_workbook(path)["Résultats"].iter_rows(values_only=True)]
    assert any(r[0] == "Erreurs techniques" for r in results)


# --- 9. late replays: a finished call's outcome only moves forward --------------------------------

STEP = f"{PUBLIC_BASE}/ivr/step"


def _abandoned_on_the_thematique_menu(twilio, db):
    t = twilio.call(caller="+33612345678", keys=["93", "1"], hang_up_after=3)
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.step) == (Outcome.abandoned, "motif")
    return t, ElementTree.fromstring(t.twiml[-1]).find("Gather").get("action")


@pytest.mark.parametrize("later", ["+5min", "2026-12-21T20:00"])
def test_a_replay_after_the_hang_up_never_changes_the_outcome(app, twilio, db, clock, later):
    """The thématique menu's result replayed after the hang-up (open: it would dial; at 20:00:
    closed) changes nothing but the events."""
    t, menu_action = _abandoned_on_the_thematique_menu(twilio, db)
    before = _record(db, t.call_sid)
    clock.set(clock.now + timedelta(minutes=5) if later == "+5min" else later)
    status, body = twilio.post(t, menu_action, _params(t.call_sid, Digits="1"))
    assert status == 200
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.outcome_inferred, call.closed_reason, call.dial_started_at,
            call.wait_seconds) == (Outcome.abandoned, True, None, None, None)
    assert _record(db, t.call_sid)[:-1] == before[:-1]


def test_a_stale_link_failing_after_the_hang_up_keeps_the_outcome(app, twilio, db, clock):
    """A replay whose state no longer decodes (a step renamed by a deploy) is answered with the
    apology, but the finished call is not turned into a technical failure."""
    t, _ = _abandoned_on_the_thematique_menu(twilio, db)
    clock.set(clock.now + timedelta(minutes=5))
    for url in (STEP + "?s=old_step_name", STEP + "?s=BAD!", STEP):
        status, body = twilio.post(t, url, _params(t.call_sid, Digits="1"))
        assert status == 200 and "difficulté technique" in body
    assert call_record(db, t.call_sid).outcome is Outcome.abandoned


# --- 6. only the first webhook creates a call ----------------------------------------------------

def test_flow_webhooks_of_an_unknown_call_never_create_one(app, twilio, db):
    """Signed step URLs, valid or not, for a CallSid the service never answered: answered, kept
    apart, never counted; the first webhook, when it comes, adopts them."""
    sids = []
    for url, digits in ((STEP, "1"), (STEP + "?s=BAD", "1"), (STEP + "?s=dial&d=99", "1"),
                        (STEP + "?s=ask_departement", "93"), (STEP + "?s=departement", "93")):
        sids.append(new_sid())
        status, body = twilio.post(Transcript(call_sid=sids[-1]), url,
                                   _params(sids[-1], Digits=digits))
        assert status == 200 and ElementTree.fromstring(body).tag == "Response"
    assert db.scalar(select(func.count()).select_from(Call)) == 0
    assert db.scalar(select(func.count()).select_from(UnmatchedCallback)) == len(sids)
    # The last one was a real call whose first webhook was late: it is adopted.
    t = Transcript(call_sid=sids[-1])
    twilio.post(t, VOICE, _params(sids[-1]))
    call = call_record(db, sids[-1])
    assert call.departement_code == "93"
    assert db.scalar(select(func.count()).select_from(Call)) == 1


# --- 5. the Fallback URL's apology is a technical failure ---------------------------------------

FALLBACK = f"{PUBLIC_BASE}/ivr/fallback"


@pytest.mark.parametrize("when", ["first request", "mid-call"])
def test_the_fallback_apology_is_a_technical_failure(app, twilio, db, when):
    if when == "first request":  # the Voice URL failed: Twilio fetched the Fallback URL
        t, status = Transcript(call_sid=new_sid()), "ringing"
    else:
        t, status = twilio.call(caller="+33612345678", keys=["93"], hang_up_after=2,
                                send_status=False), "in-progress"
    code, body = twilio.post(t, FALLBACK, _params(t.call_sid, CallStatus=status, ErrorCode="11200"))
    assert code == 200 and "difficulté technique" in body
    twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed", CallDuration="12"))
    assert journal_of(app).wait_until_empty(timeout=20)
    call = call_record(db, t.call_sid)
    assert (call.outcome, call.outcome_inferred, call.status) == (Outcome.error, False, "completed")
    assert call.called_number == "+33806000156"


# --- 3. instants and durations within what the call allows ---------------------------------------

def test_a_callback_instant_is_bounded_by_the_call(app, twilio, db, clock):
    """A Timestamp before the call started, or after the callback was received, is bounded."""
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], send_status=False,
                    referents=[Referent("caller-hangup")])
    leg, start = new_sid(), clock.now
    leg_url = f"{PUBLIC_BASE}/ivr/leg-status?s=dial&d=75&c={t.call_sid}"
    clock.set(start + timedelta(seconds=40))
    twilio.post(t, leg_url, _params(leg, CallStatus="ringing", To="+33199007501",
                                    Timestamp=_rfc2822(start - timedelta(hours=23))))
    twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed", CallDuration="30",
                                   Timestamp=_rfc2822(start - timedelta(hours=23))))
    call = call_record(db, t.call_sid)
    assert call.started_at <= call.ended_at <= clock.now
    assert all(l.started_at >= call.started_at for l in call.legs)
    t = twilio.call(caller="+33612345678", keys=["75"], hang_up_after=2, send_status=False)
    twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed", CallDuration="30",
                                   Timestamp=_rfc2822(clock.now + timedelta(hours=23))))
    assert call_record(db, t.call_sid).ended_at == clock.now


def test_durations_are_bounded_by_the_limits_given_to_twilio(app, twilio, db, clock):
    """Twilio cuts a forwarded call at the <Dial>'s time limit and a message at the <Record>'s
    length: a longer talk or recording time is brought back to the limit."""
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], send_status=False,
                    referents=[Referent("accept")])
    dial = next((url, p) for url, p, _ in t.requests if p.get("DialCallStatus") == "completed")
    twilio.post(t, dial[0], dict(dial[1], DialCallDuration="86400"))
    twilio.post(t, STATUS, _params(t.call_sid, CallStatus="completed", CallDuration="86400"))
    call = call_record(db, t.call_sid)
    assert call.talk_seconds == app.config["SVI_CALL_TIME_LIMIT"] == 900
    t = twilio.call(caller="+33612345678", keys=["75", "1", "1"], send_status=False,
                    voicemail_seconds=20, referents=[Referent("no-answer")])
    record = next((url, p) for url, p, _ in t.requests if p.get("RecordingUrl"))
    twilio.post(t, record[0], dict(record[1], RecordingDuration="86400"))
    assert call_record(db, t.call_sid).recording_seconds <= app.config["SVI_VOICEMAIL_MAX_SECONDS"]


@pytest.mark.parametrize("field", ["To", "From", "CallStatus", "leg To", "RecordingUrl"])
def test_a_forbidden_character_in_any_field_never_loses_the_call(app, twilio, db, field):
    """A NUL (which PostgreSQL refuses in text) in any field Twilio posts: the call and what it
    says are recorded, the text cleaned by the one text policy."""
    nul = lambda value: value[:5] + "\x00" + value[5:]
    t = Transcript(call_sid=new_sid())
    first = _params(t.call_sid, CallStatus="ringing")
    if field in ("To", "From", "CallStatus"):
        first[field] = nul(first[field])
    status, body = twilio.post(t, VOICE, first)
    assert status == 200
    for digits in ("75", "1", "1"):
        action = ElementTree.fromstring(body).find("Gather").get("action")
        status, body = twilio.post(t, action, _params(t.call_sid, Digits=digits))
    dial_verb = ElementTree.fromstring(body).find("Dial")
    number = dial_verb.find("Number")
    leg, leg_to = new_sid(), number.text.strip()
    whisper = twilio.post(t, number.get("url"), {"CallSid": leg, "AccountSid": "AC" + "0" * 32,
                                                 "From": "+33806000156",
                                                 "To": nul(leg_to) if field == "leg To" else leg_to})
    assert whisper[0] == 200
    dial = _params(t.call_sid, DialCallStatus="no-answer", DialCallSid=leg)
    _, body = twilio.post(t, dial_verb.get("action"), dial)
    offer = ElementTree.fromstring(body).find("Gather")  # nobody answered: callback or message
    _, body = twilio.post(t, offer.get("action"), _params(t.call_sid, Digits="3"))
    record = ElementTree.fromstring(body).find("Record")
    if record is not None:
        url = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1"
        twilio.post(t, record.get("action"), _params(
            t.call_sid, RecordingDuration="12",
            RecordingUrl=nul(url) if field == "RecordingUrl" else url))
    assert journal_of(app).wait_until_empty(timeout=20)
    call = call_record(db, t.call_sid)
    assert call.called_number == "+33806000156" and "\x00" not in call.caller_masked
    assert [l.number for l in call.legs] == [leg_to]
    assert record is not None
    assert call.outcome is Outcome.voicemail and "\x00" not in call.recording_url


def test_a_record_that_cannot_be_applied_is_set_aside_not_dropped(app, twilio, db, monkeypatch):
    """Whatever the error, a tracking record is never silently lost: journaled, retried, then
    set aside for the operator."""
    from tracking import recorder

    def broken(db, kind, payload):
        raise ValueError("bogue")
    monkeypatch.setattr(recorder, "apply", broken)
    t = Transcript(call_sid=new_sid())
    status, body = twilio.post(t, f"{PUBLIC_BASE}/ivr/status",
                               _params(t.call_sid, CallStatus="completed"))
    assert status == 200
    journal = journal_of(app)
    assert journal.wait_until_empty(timeout=20)
    rejected = (journal.folder / "rejected.jsonl").read_text()
    assert t.call_sid in rejected
