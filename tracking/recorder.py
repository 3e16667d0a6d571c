"""What each webhook records, as a plain record: a kind and a JSON-able payload.

The Twilio edge builds the record while it answers, then hands it to `deliver` (ivr/), which
applies it at once or, when the database cannot take it in time, appends it to the journal
(`tracking/journal.py`), whose replay applies the very same record later. Either way the
final rows are the same. Numbers in payloads are already hashed or masked.

Only the first webhook of a call (`first`, or `first_error` when the caller heard the
technical apology there, or Twilio fetched the Fallback URL) proves that the service answered
it, and creates it. Every other record (`step`, `error`, `status`, `leg_status`, `whisper`,
`whisper_result`) never creates a call: for a CallSid with no call yet it is kept apart
(`UnmatchedCallback`) and applied when the call appears — its first webhook may still be in a
journal — or erased with the callers' data.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import RawConnection
from tracking import operations as ops
from tracking.models import Call, CallLeg, UnmatchedCallback


def jsonable(payload: dict) -> dict:
    """The payload as JSON holds it (instants as ISO text): what the journal and the table keep."""
    return json.loads(json.dumps(payload, default=lambda v: v.isoformat()))


def _at(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _track(p: dict) -> dict:
    """The flow's facts of a record; records journaled before migration 0006 call the
    thématique `motif`."""
    track = p["track"]
    if "motif" in track:
        track = {("thematique" if k == "motif" else k): v for k, v in track.items()}
    return track


def record_first_hot(conn: RawConnection, p: dict) -> bool:
    """The first webhook on the hot connection (see `operations.record_incoming_call`)."""
    return ops.record_incoming_call(conn, p["sid"], caller_hash=p["caller_hash"],
                                    caller_masked=p["caller_masked"], called=p["called"],
                                    at=_at(p["at"]), track=p["track"], event=p["event"],
                                    event_step=p["event_step"], test=p.get("test", False))


def _first(db: Session, p: dict) -> Call:
    return ops.record_first_webhook(db, p["sid"], caller_hash=p["caller_hash"],
                                    caller_masked=p["caller_masked"], called=p["called"],
                                    at=_at(p["at"]), track=_track(p), event=p["event"],
                                    event_step=p["event_step"], test=p.get("test", False))


def _step(db: Session, call: Call, p: dict) -> None:
    at = _at(p["at"])
    data = ops.reaching(p["event"], p["track"])
    if p.get("dial"):
        data = {**data, ops.DIAL: p["dial"]}
    ops.log_event(db, call, "step", at=at, step=p["step"], data=data)
    if p.get("dial"):
        ops.apply_dial_result(db, call, at=at, **p["dial"])
    ops.apply_flow(db, call, _track(p), at=at, verb_result=bool(p.get("dial")))


def _error(db: Session, call: Call, p: dict) -> None:
    """The caller heard the technical apology: a technical failure, unless more is known."""
    ops.log_event(db, call, "error", at=_at(p["at"]), step=p.get("step"), data=p["event"])
    ops.state_error(call, at=_at(p["at"]))
    db.flush()


def _first_error(db: Session, p: dict) -> Call:
    """The apology at the call's first request (or from the Fallback URL): the call reached the
    service, so it is created if unknown."""
    call = ops.get_or_create_call(db, p["sid"], caller_hash=p["caller_hash"],
                                  caller_masked=p["caller_masked"], called=p.get("called"),
                                  at=_at(p["at"]))
    _error(db, call, p)
    return call


def _whisper(db: Session, call: Call, p: dict) -> None:
    at = _at(p["at"])
    ops.upsert_leg(db, call, p["leg_sid"], number=p["number"], at=at)
    ops.log_event(db, call, "whisper", at=at, step=p["step"], data=p["event"])


def _whisper_result(db: Session, call: Call, p: dict) -> None:
    at = _at(p["at"])
    leg = ops.upsert_leg(db, call, p["leg_sid"], number=p["number"], at=at)
    ops.log_event(db, call, "whisper", at=at, step="accepted" if p["accepted"] else "declined",
                  data=p["event"])
    if p["accepted"]:
        ops.accept_leg(db, call, leg, at=at)


def _received(p: dict) -> datetime | None:
    return _at(p["received"]) if p.get("received") else None


def _status(db: Session, call: Call, p: dict) -> None:
    at = ops.callback_instant(call, _at(p["at"]), _received(p))
    ops.log_event(db, call, "status", at=at, data=p["event"])
    ops.apply_call_status(db, call, status=p["status"], duration=p["duration"], at=at)


def _leg_status(db: Session, call: Call, p: dict) -> None:
    at = ops.callback_instant(call, _at(p["at"]), _received(p))
    leg = ops.upsert_leg(db, call, p["leg_sid"], number=p["number"], at=at)
    ops.log_event(db, call, "leg-status", at=at, data=p["event"])
    ops.apply_leg_status(db, leg, status=p["status"], duration=p["duration"], at=at)


_CREATING = {"first": _first, "first_error": _first_error}
_CALLBACKS = {"step": _step, "error": _error, "status": _status, "leg_status": _leg_status,
              "whisper": _whisper, "whisper_result": _whisper_result}
KINDS = set(_CREATING) | set(_CALLBACKS)


def apply(db: Session, kind: str, payload: dict) -> None:
    """Apply one record in the session (flushed, not committed)."""
    if kind in _CREATING:
        _one_at_a_time(db, payload["sid"])
        call = _CREATING[kind](db, payload)
        adopt_unmatched(db, call)
        return
    if kind not in _CALLBACKS:
        raise ValueError(f"unknown tracking record {kind!r}")
    call = ops.find_call(db, payload["sid"], lock=True)
    if call is None:  # its first record may be being applied now: wait for it, look again
        _one_at_a_time(db, payload["sid"])
        call = ops.find_call(db, payload["sid"], lock=True)
    if call is None:
        db.add(UnmatchedCallback(call_sid=payload["sid"], kind=kind, payload=jsonable(payload),
                                 received_at=_at(payload["at"])))
        db.flush()
        return
    _CALLBACKS[kind](db, call, payload)


def _one_at_a_time(db: Session, call_sid: str) -> None:
    """PostgreSQL: wait for any other transaction creating this call, or keeping a callback of
    it apart, to end (a lock on the CallSid until this transaction ends). Without it, a callback
    that finds no call while its first record is being applied (two journals replayed at once)
    would be kept apart after the call adopted what was waiting, and never applied. Only on
    these rare paths: the first webhook's hot path and callbacks of a known call never take it.
    SQLite runs one writer at a time anyway."""
    if db.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(call_sid.encode(), digest_size=8).digest(), "big",
                             signed=True)
        db.execute(select(func.pg_advisory_xact_lock(key)))


def adopt_unmatched(db: Session, call: Call) -> None:
    """Apply the callbacks that came for this call before it was recorded, in their order."""
    waiting = db.scalars(select(UnmatchedCallback).where(UnmatchedCallback.call_sid == call.call_sid)
                         .order_by(UnmatchedCallback.id)).all()
    for row in waiting:
        _CALLBACKS[row.kind](db, call, row.payload)
        db.delete(row)
    if waiting:
        db.flush()


def leg_accepted(db: Session, leg_sid: str | None) -> bool:
    """True when the referent accepted this leg on the whisper, recorded or kept apart."""
    if not leg_sid:
        return False
    if ops.leg_accepted(db, leg_sid):
        return True
    if db.scalars(select(CallLeg.id).where(CallLeg.leg_sid == leg_sid)).first() is not None:
        return False
    apart = db.scalars(select(UnmatchedCallback.payload).where(
        UnmatchedCallback.kind == "whisper_result")).all()
    return any(p.get("leg_sid") == leg_sid and p.get("accepted") for p in apart)
