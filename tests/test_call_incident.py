"""The national team's incident messages: announced before routing to callers of the
département concerned (or of all), not to the others, and no longer after their expiry; read
once per directory version by each process, never at each webhook."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import sessionmaker

from audit.operations import Actor
from core.db import make_engine
from ivr.simulator import Referent
from tests.helpers import count_selects, heard
from tickets import incidents

ACCEPT = Referent("accept")
OUTAGE = "Le logiciel est indisponible ce matin, nos équipes rétablissent le service."
NATIONAL = "Une mise à jour est en cours dans tous les départements."


def _announce(db, code: str | None, message: str, until=None):
    actor = Actor.cli()
    incident = incidents.create(db, actor, "Panne du logiciel", departement_code=code)
    incidents.set_message(db, actor, incident, message, until)
    db.commit()
    return incident


def _said(transcript, message: str) -> bool:
    return f"Information importante : {message}" in transcript.heard


def test_heard_in_its_departement_only_and_no_longer_after_its_expiry(twilio, db, clock):
    clock.set("2026-12-21T10:00")  # Monday, open
    _announce(db, "93", OUTAGE, until=clock.now + timedelta(hours=1))
    t = twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[ACCEPT])
    assert _said(t, OUTAGE)
    # After the département is known and the motif asked, before routing.
    at = t.heard.index(f"Information importante : {OUTAGE}")
    assert t.heard[at - 1] == "Pour tout autre motif, tapez 9."
    assert t.heard[at + 1].startswith("Nous vous mettons en relation")
    assert t.dialled == [["+33199009301"]]
    other = twilio.call(caller="+33612345679", keys=["75", "1", "1"], referents=[ACCEPT])
    assert not any("Information importante" in line for line in other.heard)
    clock.set("2026-12-21T10:59")
    assert _said(twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[ACCEPT]),
                 OUTAGE)
    clock.set("2026-12-21T11:00")  # its expiry: nothing to write, nothing heard
    later = twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[ACCEPT])
    assert not any("Information importante" in line for line in later.heard)
    assert later.dialled == [["+33199009301"]]


def test_a_message_for_every_departement_comes_before_a_departement_own(twilio, db):
    _announce(db, None, NATIONAL)
    _announce(db, "93", OUTAGE)
    t = twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[ACCEPT])
    announced = [line for line in t.heard if line.startswith("Information importante")]
    assert announced == [f"Information importante : {NATIONAL}", f"Information importante : {OUTAGE}"]
    # Heard also where the call is not put through (before routing): no phone assistance in 974.
    t = twilio.call(caller="+262692000001", keys=["974", "1", "1"])
    assert _said(t, NATIONAL) and not _said(t, OUTAGE)
    assert any("ne propose pas d'assistance téléphonique" in line for line in t.heard)


def test_cleared_or_closed_it_is_no_longer_heard(twilio, db):
    incident = _announce(db, "93", OUTAGE)
    assert _said(twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[ACCEPT]),
                 OUTAGE)
    incidents.set_message(db, Actor.cli(), incident, "", None)
    db.commit()
    assert not _said(twilio.call(caller="+33612345678", keys=["93", "1", "1"],
                                 referents=[ACCEPT]), OUTAGE)
    again = _announce(db, "93", NATIONAL)
    assert _said(twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[ACCEPT]),
                 NATIONAL)
    incidents.close(db, Actor.cli(), again)
    db.commit()
    assert not _said(twilio.call(caller="+33612345678", keys=["93", "1", "1"],
                                 referents=[ACCEPT]), NATIONAL)


def test_messages_are_read_once_per_directory_version_not_per_webhook(app, twilio, db):
    selects = count_selects(app.extensions["svi.voice_engine"], "incidents")
    _announce(db, "93", OUTAGE)
    for caller in ("+33612345671", "+33612345672", "+33612345673"):
        assert _said(twilio.call(caller=caller, keys=["93", "1", "1"], referents=[ACCEPT]),
                     OUTAGE)
    assert len(selects) == 1
    _announce(db, "75", NATIONAL)  # moves the directory version: read again, once
    assert _said(twilio.call(caller="+33612345674", keys=["75", "1", "1"], referents=[ACCEPT]),
                 NATIONAL)
    twilio.call(caller="+33612345675", keys=["93", "1", "1"], referents=[ACCEPT])
    assert len(selects) == 2


def test_still_announced_while_the_database_does_not_answer(app, twilio, db):
    """The process holds the messages with the directory: a caller is routed from them."""
    _announce(db, "93", OUTAGE)
    assert _said(twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[ACCEPT]),
                 OUTAGE)
    working = app.extensions["svi.voice_sessionmaker"]
    app.extensions["svi.voice_sessionmaker"] = sessionmaker(make_engine(
        "postgresql+psycopg://nobody@/nowhere?host=/nonexistent&connect_timeout=1"))
    try:
        t, pause = twilio.begin(caller="+33612345679")
        for digits in ("93", "1"):
            t, pause = twilio.answer(pause, digits, referent=ACCEPT)
        t, pause = twilio.answer(pause, "1", referent=ACCEPT)
        assert _said(t, OUTAGE) and "difficulté technique" not in heard(t)
    finally:
        app.extensions["svi.voice_sessionmaker"] = working
