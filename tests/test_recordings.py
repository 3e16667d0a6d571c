"""Voicemail recordings: fetched from Twilio with the account's credentials and streamed, deleted
at Twilio when the retention period ends — against the local stand-in, never the internet."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import tracemalloc
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from devtools.twilio_standin import DEFAULT_ACCOUNT_SID, Seen, TwilioStandin, silent_mp3
from scheduler import jobs
from tests import factories
from tests.conftest import AUTH_TOKEN
from tests.helpers import call_record
from tickets import recordings
from tickets.recordings import RecordingError, TwilioUnreachable
from tracking.models import Call, Outcome

PATH = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Recordings"
BASE_DETAIL = "purge-callers 2026-12-21 : {n} appel(s) anonymisé(s) (antérieurs au 21/12/2025)"


def _loopback(host) -> bool:
    if host in ("localhost", None, "") or str(host).startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Any connection or name lookup beyond loopback fails the test."""
    attempts = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            attempts.append(address)
            raise OSError(f"test sans internet : connexion à {address} refusée")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host if isinstance(host, str) else None):
            attempts.append(host)
            raise socket.gaierror(f"test sans internet : {host} non résolu")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == []


@pytest.fixture
def standin(app):
    with TwilioStandin(auth_token=AUTH_TOKEN) as twilio:
        app.config.update(twilio.settings)
        yield twilio


def _voicemail(db, standin, *, days_ago: int, clock, **audio) -> Call:
    sid = standin.add(**audio)
    return factories.call(db, started_at=clock.now - timedelta(days=days_ago),
                          outcome=Outcome.voicemail, recording_url=standin.recording_url(sid),
                          recording_seconds=20)


def _sid(call: Call) -> str:
    return call.recording_url.rsplit("/", 1)[1]


# --- listening ---------------------------------------------------------------------------------

def test_stream_hands_on_the_audio_fetched_with_the_account_credentials(app, db, standin, clock):
    audio = os.urandom(300_000)
    call = _voicemail(db, standin, days_ago=1, clock=clock, audio=audio)
    chunks, content_type, length = recordings.stream(app, call)
    parts = list(chunks)
    assert b"".join(parts) == audio and (content_type, length) == ("audio/mpeg", len(audio))
    assert len(parts) > 1 and max(map(len, parts)) <= recordings.CHUNK
    # Twilio's own media address, on the configured base, with basic auth (SID, token).
    assert standin.seen() == [Seen("GET", f"{PATH}/{_sid(call)}.mp3", True, DEFAULT_ACCOUNT_SID)]

    chunks, content_type, _ = recordings.stream(app, call, audio_format="wav")
    assert content_type == "audio/x-wav" and b"".join(chunks).startswith(b"RIFF")


def test_stream_keeps_memory_flat(app, db, standin, clock):
    audio = os.urandom(8 * 1024 * 1024)
    call = _voicemail(db, standin, days_ago=1, clock=clock, audio=audio)
    del audio
    tracemalloc.start()
    try:
        chunks, _, length = recordings.stream(app, call)
        received = 0
        for chunk in chunks:
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == length == 8 * 1024 * 1024
    assert peak < 2 * 1024 * 1024, peak


def test_closing_the_stream_early_closes_the_connection(app, db, standin, clock):
    call = _voicemail(db, standin, days_ago=1, clock=clock, audio=os.urandom(1024 * 1024))
    chunks, _, _ = recordings.stream(app, call)
    assert len(next(chunks)) <= recordings.CHUNK
    chunks.close()  # the browser went away: no error, nothing left open
    assert len(standin.seen()) == 1


def test_wrong_credentials_give_a_french_error(app, db, standin, clock):
    call = _voicemail(db, standin, days_ago=1, clock=clock)
    app.config["TWILIO_AUTH_TOKEN"] = "pas-le-bon-jeton"
    with pytest.raises(RecordingError) as error:
        recordings.stream(app, call)
    assert str(error.value) == ("enregistrement indisponible : Twilio a refusé les identifiants du "
                                "compte (lecture, HTTP 401)")
    assert [(r.method, r.authorized) for r in standin.seen()] == [("GET", False)]


def test_twilio_down_gives_a_french_error_quickly(app, db, clock):
    with TwilioStandin(auth_token=AUTH_TOKEN) as gone:
        settings = gone.settings
        call = _voicemail(db, gone, days_ago=1, clock=clock)
    app.config.update(settings)  # nobody listens on that port any more
    started = time.monotonic()
    with pytest.raises(TwilioUnreachable) as error:
        recordings.stream(app, call)
    assert time.monotonic() - started < 2
    assert str(error.value) == ("enregistrement indisponible : Twilio est injoignable ; "
                                "réessayez dans quelques minutes")


def test_a_slow_twilio_times_out_with_a_french_error(app, db, standin, clock, monkeypatch):
    call = _voicemail(db, standin, days_ago=1, clock=clock)
    monkeypatch.setattr(recordings, "READ_TIMEOUT", 0.3)
    standin.delay = 2
    started = time.monotonic()
    with pytest.raises(TwilioUnreachable, match="^enregistrement indisponible : Twilio ne répond "
                                                "pas à temps"):
        recordings.stream(app, call)
    assert time.monotonic() - started < 1.5


def test_missing_recording_account_or_audio_give_french_errors(app, db, standin, clock):
    call = _voicemail(db, standin, days_ago=1, clock=clock)
    standin.deleted.add(_sid(call))
    with pytest.raises(RecordingError, match="^enregistrement indisponible : il n'existe plus chez Twilio$"):
        recordings.stream(app, call)
    standin.failures[_sid(call)] = 503
    standin.deleted.clear()
    with pytest.raises(RecordingError, match=r"Twilio a répondu HTTP 503 \(lecture\)"):
        recordings.stream(app, call)
    requests_made = len(standin.seen())

    purged = factories.call(db, outcome=Outcome.voicemail, recording_url=None)
    with pytest.raises(RecordingError, match="^enregistrement indisponible : aucun message"):
        recordings.stream(app, purged)
    odd = factories.call(db, outcome=Outcome.voicemail, recording_url="https://example.org/x.mp3")
    with pytest.raises(RecordingError, match="ne désigne pas un enregistrement Twilio"):
        recordings.stream(app, odd)
    app.config["TWILIO_ACCOUNT_SID"] = ""
    with pytest.raises(RecordingError, match="le compte Twilio n'est pas configuré"):
        recordings.stream(app, call)
    assert len(standin.seen()) == requests_made  # none of these asked Twilio


def test_a_voicemail_left_through_the_webhooks_can_be_heard(app, db, standin, twilio, clock):
    clock.set("2026-12-19T10:00")  # Saturday; 93 has voicemail in the demo
    t = twilio.call(caller="+33612345678", keys=["93"], voicemail_seconds=25)
    call = call_record(db, t.call_sid)
    chunks, content_type, length = recordings.stream(app, call)
    assert b"".join(chunks) == standin.default_audio["mp3"] and content_type == "audio/mpeg"


def test_by_default_the_service_asks_api_twilio_com(app, db, clock, no_internet):
    app.config["TWILIO_ACCOUNT_SID"] = DEFAULT_ACCOUNT_SID  # TWILIO_API_BASE left as shipped
    call = factories.call(db, outcome=Outcome.voicemail,
                          recording_url=f"https://api.twilio.com{PATH}/RE{'a' * 32}")
    with pytest.raises(TwilioUnreachable):
        recordings.stream(app, call)
    with pytest.raises(TwilioUnreachable):
        recordings.delete(app, call)
    assert no_internet == ["api.twilio.com"] * 2  # refused by this module's guard
    no_internet.clear()


# --- deleting ----------------------------------------------------------------------------------

def test_delete_removes_the_recording_at_twilio_and_a_404_means_already_gone(app, db, standin, clock):
    call = _voicemail(db, standin, days_ago=1, clock=clock)
    assert recordings.delete(app, call) is True
    assert recordings.delete(app, call) is False
    assert [(r.method, r.path, r.authorized) for r in standin.seen()] == [
        ("DELETE", f"{PATH}/{_sid(call)}.json", True)] * 2
    assert standin.deletions() == [_sid(call)] * 2 and call.recording_url  # left to the caller

    other = _voicemail(db, standin, days_ago=1, clock=clock)
    app.config["TWILIO_AUTH_TOKEN"] = "pas-le-bon-jeton"
    with pytest.raises(RecordingError, match=r"refusé les identifiants du compte \(suppression, HTTP 401\)"):
        recordings.delete(app, other)
    assert standin.exists(_sid(other))


# --- retention ---------------------------------------------------------------------------------

def test_the_purge_deletes_exactly_the_expired_recordings_then_forgets_them(app, db, standin, clock,
                                                                            monkeypatch):
    monkeypatch.setattr(recordings, "PURGE_BATCH", 2)  # several batches
    expired = [_voicemail(db, standin, days_ago=days, clock=clock) for days in (366, 400, 700)]
    gone = _voicemail(db, standin, days_ago=500, clock=clock)
    standin.deleted.add(_sid(gone))  # deleted at Twilio already (a run cut short, by hand…)
    recent = _voicemail(db, standin, days_ago=364, clock=clock)
    old_without = factories.call(db, started_at=clock.now - timedelta(days=400))

    outcome = jobs.purge_callers(app)
    assert outcome == jobs.JobResult("done", BASE_DETAIL.format(n=5) + " ; 3 enregistrement(s) "
                                     "supprimé(s) chez Twilio, 1 déjà absent(s)")
    assert sorted(standin.deletions()) == sorted(_sid(c) for c in [*expired, gone])
    assert all(r.authorized for r in standin.seen()) and not standin.seen("GET")
    db.expire_all()
    urls = {c.id: c.recording_url for c in db.scalars(select(Call))}
    assert urls == {**{c.id: None for c in [*expired, gone, old_without]},
                    recent.id: standin.recording_url(_sid(recent))}
    assert db.get(Call, expired[0].id).recording_seconds == 20  # the statistics stay

    clock.set("2026-12-22T03:00")  # the next day: nothing left to delete
    count = len(standin.seen())
    assert jobs.purge_callers(app).message == BASE_DETAIL.format(n=0).replace(
        "2026-12-21", "2026-12-22").replace("21/12/2025", "22/12/2025")
    assert len(standin.seen()) == count


def test_a_failed_deletion_keeps_the_address_for_the_next_day(app, db, standin, clock):
    first, failing, last = (_voicemail(db, standin, days_ago=400, clock=clock) for _ in range(3))
    sid = _sid(failing)
    standin.failures[sid] = 500

    outcome = jobs.purge_callers(app)
    assert outcome.status == "done" and outcome.message.endswith(
        "2 enregistrement(s) supprimé(s) chez Twilio, 1 en échec, conservé(s) pour le prochain passage")
    db.expire_all()
    assert [db.get(Call, c.id).recording_url is None for c in (first, failing, last)] == [True, False, True]
    assert standin.exists(sid)

    del standin.failures[sid]
    clock.set("2026-12-22T03:00")
    assert jobs.purge_callers(app).message.endswith("1 enregistrement(s) supprimé(s) chez Twilio")
    db.expire_all()
    assert db.get(Call, failing.id).recording_url is None and not standin.exists(sid)


def test_twilio_unreachable_stops_the_purge_and_keeps_every_address(app, db, clock):
    with TwilioStandin(auth_token=AUTH_TOKEN) as gone:
        settings = gone.settings
        calls = [_voicemail(db, gone, days_ago=400, clock=clock) for _ in range(3)]
    app.config.update(settings)
    started = time.monotonic()
    outcome = jobs.purge_callers(app)
    assert time.monotonic() - started < 3  # one attempt, not one per recording
    assert outcome.status == "done" and outcome.message.endswith(
        "0 enregistrement(s) supprimé(s) chez Twilio, 1 en échec, conservé(s) pour le prochain "
        "passage, arrêt : Twilio injoignable")
    db.expire_all()
    assert all(db.get(Call, c.id).recording_url for c in calls)
    assert all(db.get(Call, c.id).caller_hash is None for c in calls)  # the callers purge ran


def test_without_a_twilio_account_nothing_is_forgotten(app, db, standin, clock):
    calls = [_voicemail(db, standin, days_ago=400, clock=clock) for _ in range(2)]
    app.config["TWILIO_ACCOUNT_SID"] = ""
    outcome = jobs.purge_callers(app)
    assert outcome.message.endswith("0 enregistrement(s) supprimé(s) chez Twilio, 2 en échec, "
                                    "conservé(s) pour le prochain passage, arrêt : compte Twilio "
                                    "non configuré")
    db.expire_all()
    assert all(db.get(Call, c.id).recording_url for c in calls) and standin.seen() == []


def test_an_address_changed_meanwhile_is_not_forgotten(app, db, standin, clock):
    call = _voicemail(db, standin, days_ago=400, clock=clock)
    recordings.forget(db, [(call.id, "https://api.twilio.com/autre")])
    db.commit()
    db.expire_all()
    assert db.get(Call, call.id).recording_url == standin.recording_url(_sid(call))


# --- the stand-in itself -----------------------------------------------------------------------

def test_standin_checks_credentials_and_answers_like_twilio():
    with TwilioStandin(auth_token="jeton") as twilio:
        sid = twilio.add(audio=silent_mp3(1))
        url = f"{twilio.url}{PATH}/{sid}"
        assert requests.delete(f"{url}.json", timeout=5).status_code == 401
        wrong = requests.get(f"{url}.mp3", auth=(DEFAULT_ACCOUNT_SID, "faux"), timeout=5)
        assert (wrong.status_code, wrong.json()["code"]) == (401, 20003)
        other = f"{twilio.url}/2010-04-01/Accounts/AC{'1' * 32}/Recordings/{sid}.mp3"
        assert requests.get(other, auth=(DEFAULT_ACCOUNT_SID, "jeton"), timeout=5).status_code == 404
        good = requests.get(f"{url}.mp3", auth=(DEFAULT_ACCOUNT_SID, "jeton"), timeout=5)
        assert good.content == silent_mp3(1) and good.headers["Content-Type"] == "audio/mpeg"
        assert len(good.content) % 417 == 0 and good.content[:2] == b"\xff\xfb"
        assert requests.delete(f"{url}.json", auth=(DEFAULT_ACCOUNT_SID, "jeton"), timeout=5).status_code == 204
        assert requests.delete(f"{url}.json", auth=(DEFAULT_ACCOUNT_SID, "jeton"), timeout=5).status_code == 404
        assert requests.get(f"{url}.mp3", auth=(DEFAULT_ACCOUNT_SID, "jeton"), timeout=5).status_code == 404
        assert [(r.method, r.authorized) for r in twilio.seen()] == [
            ("DELETE", False), ("GET", False), ("GET", True), ("GET", True), ("DELETE", True),
            ("DELETE", True), ("GET", True)]
        assert twilio.deletions() == [sid, sid]
        twilio.fail = 503
        assert requests.get(f"{url}.mp3", auth=(DEFAULT_ACCOUNT_SID, "jeton"), timeout=5).status_code == 503
