"""Recording calls. Every function only flushes: the webhook edge commits.

Twilio may send a callback twice, late, or out of order: each function is written so that the
final record is the same whatever the order (statuses only move forward, first values stick,
an inferred outcome never overrides one the flow stated).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.db import Base, RawConnection, RawStatement, UTCDateTime
from core.privacy import caller_hash, mask_number
from tracking import solicitations
from tracking.models import STATUS_ORDER, TERMINAL, Call, CallEvent, CallLeg, Outcome

#: Steps during which a hang-up means "hung up while it rang", not "abandoned in the menu".
DIAL_STEPS = {"dial"}
#: Request fields kept in events; numbers are masked, everything else is dropped.
EVENT_FIELDS = ("CallStatus", "Digits", "DialCallStatus", "DialCallDuration", "DialCallSid",
                "CallDuration", "SequenceNumber", "Timestamp", "RecordingDuration",
                "AnsweredBy", "ErrorCode")
NUMBER_FIELDS = ("From", "To", "Caller", "Called")


def event_data(form: dict) -> dict:
    """The part of a webhook worth keeping, with phone numbers masked."""
    data = {k: form[k] for k in EVENT_FIELDS if k in form}
    data.update({k: mask_number(form[k]) for k in NUMBER_FIELDS if k in form})
    return data


def _advance(current: str | None, new: str) -> bool:
    return STATUS_ORDER.get(new, -1) > STATUS_ORDER.get(current or "", -1)


def _new_call(call_sid: str, caller: str | None, called: str | None, at: datetime,
              hash_key: str) -> dict:
    return dict(call_sid=call_sid, started_at=at, status="in-progress",
                caller_hash=caller_hash(caller, hash_key),
                caller_masked=mask_number(caller) if caller is not None else "inconnu",
                called_number=called or "", updated_at=at)


@lru_cache(maxsize=8)
def _insert_if_absent(dialect: str, table_name: str, key: str):
    """INSERT … ON CONFLICT (key) DO NOTHING RETURNING id, built once per dialect and table."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Base.metadata.tables[table_name]
    return insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c.id)


def _insert_if_new(db: Session, values: dict, table=Call.__table__, key: str = "call_sid") -> int | None:
    """INSERT a row unless its unique key exists (atomic, race-free); its id, or None."""
    conn = db.connection()
    return conn.execute(_insert_if_absent(conn.dialect.name, table.name, key), values).scalar()


def get_or_create_call(db: Session, call_sid: str, *, caller: str | None = None,
                       called: str | None = None, at: datetime, hash_key: str) -> Call:
    """The call for a CallSid, created on first sight (a retried webhook finds the same row)."""
    if not call_sid:
        raise ValueError("webhook without CallSid")
    query = select(Call).where(Call.call_sid == call_sid)
    call = db.scalars(query).one_or_none()
    if call is None:
        _insert_if_new(db, _new_call(call_sid, caller, called, at, hash_key))
        return db.scalars(query).one()
    if caller is not None and call.caller_hash is None and call.caller_masked == "inconnu":
        call.caller_hash, call.caller_masked = caller_hash(caller, hash_key), mask_number(caller)
    return call


#: Facts of a first webhook that the INSERT of the call holds.
_FIRST_FACTS = {"step", "departement", "motif"}


def record_incoming_call(conn: RawConnection, call_sid: str, *, caller: str | None,
                         called: str | None, at: datetime, hash_key: str, track: dict,
                         event: dict, event_step: str) -> bool:
    """First webhook of a call: the call with its first facts and the event, committed together.

    The hot path of every call, on the raw connection: two INSERTs in one transaction. Returns
    False, having written nothing, when the CallSid is already stored (Twilio retried the
    webhook, or a later webhook came first) or the flow stated more than step, département and
    motif: the caller then records it with `record_first_webhook`.
    """
    if not call_sid:
        raise ValueError("webhook without CallSid")
    if set(track) - _FIRST_FACTS:
        return False
    values = _new_call(call_sid, caller, called, at, hash_key)
    values.update(step=track.get("step"), departement_code=track.get("departement"),
                  motif=track.get("motif"))
    with conn.transaction():
        call_id = _RAW_INSERT_CALL.scalar(conn, values)
        if call_id is None:
            return False
        _RAW_INSERT_EVENT.execute(conn, dict(call_id=call_id, kind="step", step=event_step,
                                             at=at, data=event))
    return True


def record_first_webhook(db: Session, call_sid: str, *, caller: str | None, called: str | None,
                         at: datetime, hash_key: str, track: dict, event: dict,
                         event_step: str) -> None:
    """First webhook of a call through the ORM (see `record_incoming_call`); the edge commits.

    Gives the same final record whatever the order: the earliest instant is the call's start."""
    call = get_or_create_call(db, call_sid, caller=caller, called=called, at=at, hash_key=hash_key)
    call.started_at = min(call.started_at, at)
    apply_flow(db, call, track, at=at)
    log_event(db, call, "step", at=at, step=event_step, data=event)


_RAW_INSERT_CALL = RawStatement(lambda dialect: _insert_if_absent(dialect, "calls", "call_sid").values(
    {name: bindparam(name) for name in ("call_sid", "started_at", "status", "caller_hash",
                                        "caller_masked", "called_number", "updated_at", "step",
                                        "departement_code", "motif")}))
_RAW_INSERT_EVENT = RawStatement(CallEvent.__table__.insert().values(
    {name: bindparam(name) for name in ("call_id", "kind", "step", "at", "data")}))
_LAST_DEPARTEMENT = RawStatement(
    select(Call.departement_code)
    .where(Call.caller_hash == bindparam("caller_hash"), Call.call_sid != bindparam("call_sid"),
           Call.departement_code.is_not(None), Call.started_at >= bindparam("since", type_=UTCDateTime))
    .order_by(Call.started_at.desc()).limit(1))


def last_departement(conn: RawConnection, hashed_caller: str | None, *, call_sid: str,
                     since: datetime) -> str | None:
    """Département of this caller's latest other call since `since` (None for a hidden number).

    Runs on every incoming call, hence on the raw connection."""
    if hashed_caller is None:
        return None
    return _LAST_DEPARTEMENT.scalar(conn, dict(caller_hash=hashed_caller, call_sid=call_sid,
                                               since=since))


def log_event(db: Session, call: Call, kind: str, *, at: datetime, step: str | None = None,
              data: dict | None = None) -> None:
    """Keep a webhook or callback as an event of the call."""
    db.add(CallEvent(call_id=call.id, kind=kind, step=step, at=at, data=data or {}))


def apply_flow(db: Session, call: Call, track: dict, *, at: datetime) -> None:
    """Copy what the flow engine reported (step, département, motif, outcome…) onto the call."""
    if track.get("step"):
        call.step = track["step"]
    # The engine repeats the département on every step: only a change concerns the solicitation.
    routed_anew = ((track.get("departement") or call.departement_code) != call.departement_code
                   or (track.get("motif") or call.motif) != call.motif)
    if track.get("departement"):
        call.departement_code = track["departement"]
    if track.get("motif"):
        call.motif = track["motif"]
    if track.get("dialing") and call.dial_started_at is None:
        call.dial_started_at = at
    if track.get("closed_reason"):
        call.closed_reason = track["closed_reason"]
    if track.get("outcome"):
        call.outcome = Outcome[track["outcome"]]
        if call.outcome is Outcome.hung_up_ringing and call.dial_started_at:
            # The wait ended when the caller hung up: the call's end once its status came.
            call.wait_seconds = _seconds((call.ended_at or at) - call.dial_started_at)
        elif call.outcome is Outcome.no_answer and call.dial_started_at:
            call.wait_seconds = call.wait_seconds or _seconds(at - call.dial_started_at)
    if track.get("recording_url"):
        record_voicemail(db, call, track["recording_url"], track.get("recording_seconds"))
    db.flush()
    if routed_anew:
        solicitations.sync_call(db, call)


def record_voicemail(db: Session, call: Call, url: str, seconds: int | None) -> None:
    """A voicemail was left: nobody-answered calls become voicemail calls."""
    call.recording_url, call.recording_seconds = url, seconds
    if call.outcome in (None, Outcome.no_answer, Outcome.hung_up_ringing):
        call.outcome = Outcome.voicemail


def upsert_leg(db: Session, call: Call, leg_sid: str, *, number: str, at: datetime) -> CallLeg:
    """The dialled leg with this CallSid, created on first sight."""
    if not leg_sid:
        raise ValueError("leg webhook without CallSid")
    query = select(CallLeg).where(CallLeg.leg_sid == leg_sid)
    leg = db.scalars(query).one_or_none()
    if leg is None:
        _insert_if_new(db, dict(call_id=call.id, leg_sid=leg_sid, number=number or "",
                                status="initiated", started_at=at), CallLeg.__table__, "leg_sid")
        leg = db.scalars(query).one()
    elif number and not leg.number:
        leg.number = number
    return leg


def accept_leg(db: Session, leg: CallLeg, *, at: datetime) -> None:
    """The referent pressed the accept key on the whisper."""
    if leg.accepted_at is None:
        leg.accepted_at = at
    db.flush()


def leg_accepted(db: Session, leg_sid: str | None) -> bool:
    """True when the leg Twilio reports on was accepted on the whisper."""
    if not leg_sid:
        return False
    return db.scalars(select(CallLeg.accepted_at).where(CallLeg.leg_sid == leg_sid)).first() is not None


def apply_dial_result(db: Session, call: Call, *, leg_sid: str | None, status: str | None,
                      duration: int | None, at: datetime) -> None:
    """After <Dial>: note who answered and how long they talked."""
    leg = db.scalars(select(CallLeg).where(CallLeg.leg_sid == leg_sid)).first() if leg_sid else None
    if leg is None or leg.accepted_at is None or status != "completed":
        return
    call.answered_number = leg.number
    call.talk_seconds = duration if duration is not None else call.talk_seconds
    if call.dial_started_at:
        call.wait_seconds = _seconds(leg.accepted_at - call.dial_started_at)
    if leg.duration_seconds is None:
        leg.duration_seconds = duration
    db.flush()


def _apply_status(record: Call | CallLeg, status: str, duration: int | None, at: datetime) -> bool:
    """Move a call or leg forward in its lifecycle; first end time and duration stick.

    Returns True when `status` is terminal.
    """
    if _advance(record.status, status):
        record.status = status
    if status not in TERMINAL:
        return False
    if record.ended_at is None:
        record.ended_at = at
    if duration is not None and record.duration_seconds is None:
        record.duration_seconds = duration
    return True


def apply_call_status(db: Session, call: Call, *, status: str, duration: int | None,
                      at: datetime) -> None:
    """Status callback of the inbound call: idempotent and order-independent."""
    if _apply_status(call, status, duration, at):
        if call.outcome is None:  # the flow never stated one: the caller left before the end
            call.outcome = Outcome.hung_up_ringing if call.step in DIAL_STEPS else Outcome.abandoned
        if call.outcome is Outcome.hung_up_ringing and call.dial_started_at:
            # Whichever came first, the Dial's result or this callback, the wait ends here.
            call.wait_seconds = _seconds(call.ended_at - call.dial_started_at)
    db.flush()


def apply_leg_status(db: Session, leg: CallLeg, *, status: str, duration: int | None,
                     at: datetime) -> None:
    """Status callback of a dialled leg: idempotent and order-independent."""
    _apply_status(leg, status, duration, at)
    db.flush()


def _seconds(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds()))


def purge_callers(db: Session, *, before: datetime) -> int:
    """Forget who called before `before`: hash and masked number are erased; counts remain."""
    ids = db.scalars(select(Call.id).where(
        Call.started_at < before,
        Call.caller_hash.is_not(None) | (Call.caller_masked != "purgé"))).all()
    for chunk in range(0, len(ids), 500):
        batch = ids[chunk:chunk + 500]
        db.execute(update(Call).where(Call.id.in_(batch)).values(caller_hash=None, caller_masked="purgé")
                   .execution_options(synchronize_session=False))
        db.execute(update(CallEvent).where(CallEvent.call_id.in_(batch)).values(data={}, kind="purged")
                   .execution_options(synchronize_session=False))
    db.flush()
    return len(ids)
