"""Recording calls. Every function only flushes: the webhook edge (or the journal replay) commits.

Twilio may send a callback twice, late, or out of order: each function is written so that the
final record is the same whatever the order. Statuses only move forward; of two instants the
earliest start and end are kept; of two outcomes the flow stated, a fixed precedence decides;
what depends on several facts (an outcome inferred at hang-up, the waiting time) is derived
from all the facts known (`_settle`), never from the order they came in. A finished call's
state only moves forward: what a webhook received after the hang-up reports (a replay, a retry,
a stale link) is ignored, but for the result of the <Dial> or <Record> that was running then,
which Twilio posts just after it. Instants and durations are bounded by the call itself.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import (Column, MetaData, Table, bindparam, delete, exists, func, literal_column,
                        select, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core import observability
from core import text as text_policy
from core.db import Base, RawConnection, RawStatement, UTCDateTime
from core.privacy import mask_number
from tickets import operations as tickets
from tracking import solicitations
from tracking.models import (STATUS_ORDER, TERMINAL, Call, CallEvent, CallLeg, Outcome,
                             UnmatchedCallback)

log = logging.getLogger("svi.tracking")

#: Steps during which a hang-up means "hung up while it rang", not "abandoned in the menu".
DIAL_STEPS = {"dial"}
#: Request fields kept in events; numbers are masked, everything else is dropped.
EVENT_FIELDS = ("CallStatus", "Digits", "DialCallStatus", "DialCallDuration", "DialCallSid",
                "CallDuration", "SequenceNumber", "Timestamp", "RecordingDuration",
                "AnsweredBy", "ErrorCode")
NUMBER_FIELDS = ("From", "To", "Caller", "Called")
#: Longest value kept of an event field: whatever is posted, an event stays small.
EVENT_VALUE_MAX = 120
#: Key of the step a webhook led to, kept in its event (see `_step_at_hang_up`).
REACHED = "_reached"
#: Key of the département and thématique a webhook's flow was in, kept in its event.
FACTS = "_facts"
#: Outcome precedence: the flow may state several outcomes over a call (nobody answered, then a
#: voicemail), and webhooks may come late or twice; the highest one stands, whatever the order.
#: A technical failure only stands when nothing more telling is known.
OUTCOME_RANK = {Outcome.error: 1, Outcome.invalid_departement: 2, Outcome.no_answer: 2,
                Outcome.hung_up_ringing: 2, Outcome.abandoned: 2, Outcome.voicemail: 3,
                Outcome.out_of_hours: 4, Outcome.no_phone_assistance: 4, Outcome.answered: 5}
_OUTCOME_ORDER = {outcome: i for i, outcome in enumerate(Outcome)}
#: Key of a dial result (leg, status, talk time) kept in the event of its webhook, so that an
#: acceptance recorded after it can still make the call answered (see `accept_leg`).
DIAL = "_dial"
#: A webhook received this soon after the hang-up still happened during the call: Twilio's
#: Timestamp is to the second, and the caller may hang up while a request is in flight.
HANG_UP_SKEW = timedelta(seconds=5)
#: The result of the verb running when the caller hung up (a <Dial>, a <Record>) is posted a
#: little after the hang-up; later than this, a webhook of a finished call is a replay.
VERB_RESULT_DELAY = timedelta(seconds=60)


def event_data(form: dict) -> dict:
    """The part of a webhook worth keeping, with phone numbers masked and values bounded."""
    data = {k: text_policy.clean(str(form[k]))[:EVENT_VALUE_MAX] for k in EVENT_FIELDS if k in form}
    masked: dict[str, str] = {}  # From and Caller, To and Called: the same number, masked once
    for k in NUMBER_FIELDS:
        if k in form:
            number = form[k]
            if number not in masked:
                masked[number] = mask_number(number)
            data[k] = masked[number]
    return data


def _advance(current: str | None, new: str) -> bool:
    return STATUS_ORDER.get(new, -1) > STATUS_ORDER.get(current or "", -1)


def _new_call(call_sid: str, caller_hash: str | None, caller_masked: str, called: str | None,
              at: datetime, test: bool = False) -> dict:
    return dict(call_sid=call_sid, started_at=at, status="in-progress", caller_hash=caller_hash,
                caller_masked=caller_masked or "inconnu",
                called_number=text_policy.clean(called or "")[:64],
                updated_at=at, outcome_inferred=False, step_at=None, test=bool(test))


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


def find_call(db: Session, call_sid: str, *, lock: bool = False) -> Call | None:
    """The call of a CallSid, if the service answered it. `lock`: its row is locked until the
    transaction ends (PostgreSQL), so that two records of one call applied at once (a webhook
    and a journal's replay, two replays) apply one after the other, each on the other's result,
    instead of the later commit overwriting the earlier one's changes."""
    query = select(Call).where(Call.call_sid == call_sid)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalars(query).one_or_none()


def get_or_create_call(db: Session, call_sid: str, *, caller_hash: str | None = None,
                       caller_masked: str | None = None, called: str | None = None,
                       at: datetime) -> Call:
    """The call for a CallSid, created on first sight (a retried webhook finds the same row).

    Only for webhooks of the caller's own flow (its first request and the action URLs the
    service gave): they prove the service answered the call. Callbacks use `find_call`.
    """
    if not call_sid:
        raise ValueError("webhook without CallSid")
    call = find_call(db, call_sid, lock=True)
    if call is None:
        _insert_if_new(db, _new_call(call_sid, caller_hash, caller_masked or "inconnu", called, at))
        return find_call(db, call_sid, lock=True)
    if caller_masked is not None and call.caller_hash is None and call.caller_masked == "inconnu":
        call.caller_hash, call.caller_masked = caller_hash, caller_masked
    return call


#: Facts of a first webhook that the INSERT of the call holds.
_FIRST_FACTS = {"step", "departement", "thematique"}


def record_incoming_call(conn: RawConnection, call_sid: str, *, caller_hash: str | None,
                         caller_masked: str, called: str | None, at: datetime, track: dict,
                         event: dict, event_step: str, test: bool = False) -> bool:
    """First webhook of a call: the call with its first facts and the event, committed together.

    The hot path of every call, on the raw connection: one statement, committed on its own
    (autocommit), which inserts the call then its event. PostgreSQL: the call's INSERT in a CTE
    feeding its event's (one round trip). SQLite, whose statements write one table each: an
    INSERT into a view of the connection's own, whose trigger inserts both (see
    `_sqlite_first_webhook`); the rows it changed tell whether it did.

    Returns False, having written nothing, when the CallSid is already stored (Twilio retried
    the webhook, or a later webhook came first), when callbacks wait for it (its first record
    was journaled: the ORM adopts them), or when the flow stated more than step, département
    and thématique: the caller then records it with `record_first_webhook`.
    """
    if not call_sid:
        raise ValueError("webhook without CallSid")
    if set(track) - _FIRST_FACTS:
        return False
    params = _new_call(call_sid, caller_hash, caller_masked, called, at, test)
    params.update(step=track.get("step"), departement_code=track.get("departement"),
                  thematique=track.get("thematique"), step_at=at if track.get("step") else None,
                  event_kind="step", event_step=event_step, event_at=at,
                  event_data=reaching(event, track))
    if conn.dialect.name == "postgresql":
        return _RAW_CALL_AND_EVENT.scalar(conn, params) is not None
    conn.prepare(_SQLITE_FIRST_WEBHOOK)
    changed = conn.dbapi.total_changes
    _RAW_SQLITE_FIRST_WEBHOOK.execute(conn, params)
    return conn.dbapi.total_changes - changed == 2  # the call and its event, or nothing


def record_first_webhook(db: Session, call_sid: str, *, caller_hash: str | None,
                         caller_masked: str, called: str | None, at: datetime, track: dict,
                         event: dict, event_step: str, test: bool = False) -> Call:
    """First webhook of a call through the ORM (see `record_incoming_call`); the edge commits.

    Gives the same final record whatever the order: the earliest instant is the call's start."""
    call = get_or_create_call(db, call_sid, caller_hash=caller_hash, caller_masked=caller_masked,
                              called=called, at=at)
    call.started_at = min(call.started_at, at)
    call.test = call.test or bool(test)
    apply_flow(db, call, track, at=at)
    log_event(db, call, "step", at=at, step=event_step, data=reaching(event, track))
    return call


def reaching(event: dict, track: dict) -> dict:
    """An event's data with the step its webhook led to, and the département and thématique
    the caller was in then when the flow knows either (see `_facts_are_latest`)."""
    if not track.get("step"):
        return event
    if track.get("departement") or track.get("thematique"):
        return {**event, REACHED: track["step"],
                FACTS: [track.get("departement"), track.get("thematique")]}
    return {**event, REACHED: track["step"]}


#: Columns of a new call written by the hot path (`record_incoming_call`), and of its event.
_HOT_CALL_COLUMNS = ("call_sid", "started_at", "status", "caller_hash", "caller_masked",
                     "called_number", "updated_at", "step", "departement_code", "thematique",
                     "outcome_inferred", "step_at", "test")
_HOT_EVENT_COLUMNS = ("kind", "step", "at", "data")


def _call_if_new(dialect: str):
    """INSERT the call unless its CallSid is stored or callbacks wait for it, RETURNING its id."""
    calls, unmatched = Call.__table__, UnmatchedCallback.__table__
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    sid = bindparam("call_sid", type_=calls.c.call_sid.type)
    values = select(*(sid if name == "call_sid" else bindparam(name, type_=calls.c[name].type)
                      for name in _HOT_CALL_COLUMNS)
                    ).where(~exists().where(unmatched.c.call_sid == sid))
    return (insert(calls).from_select(_HOT_CALL_COLUMNS, values)
            .on_conflict_do_nothing(index_elements=["call_sid"]).returning(calls.c.id))


def _call_and_event(dialect: str):
    """PostgreSQL: the call (`_call_if_new`) and its first event in one statement, RETURNING
    the call's id (no row when the call was not inserted, nor then its event)."""
    events, call = CallEvent.__table__, _call_if_new(dialect).cte("new_call")
    event = [bindparam(f"event_{name}", type_=events.c[name].type) for name in _HOT_EVENT_COLUMNS]
    return (events.insert().from_select(["call_id", *_HOT_EVENT_COLUMNS], select(call.c.id, *event))
            .returning(events.c.call_id))


_RAW_CALL_AND_EVENT = RawStatement(_call_and_event)


def _sqlite_first_webhook() -> tuple[tuple[str, ...], Table]:
    """SQLite's one-statement write of a new call and its event: the TEMP view and trigger
    that each hot connection creates for itself (never part of the schema), and the view as a
    table, for its INSERT's parameters. The trigger's second statement only runs when the first
    inserted the call (`changes()` is the row count of the trigger's previous statement), with
    the call's id (`last_insert_rowid()`, within the trigger)."""
    calls, events = Call.__table__, CallEvent.__table__
    columns = [Column(name, calls.c[name].type) for name in _HOT_CALL_COLUMNS] + [
        Column(f"event_{name}", events.c[name].type) for name in _HOT_EVENT_COLUMNS]
    view = Table("svi_first_webhook", MetaData(), *columns)
    new = {column.name: literal_column(f"NEW.{column.name}") for column in columns}
    call = (sqlite.insert(calls)
            .from_select(_HOT_CALL_COLUMNS, select(*(new[name] for name in _HOT_CALL_COLUMNS))
                         .where(~exists().where(UnmatchedCallback.__table__.c.call_sid
                                                == new["call_sid"])))
            .on_conflict_do_nothing(index_elements=["call_sid"]))
    event = events.insert().from_select(
        ["call_id", *_HOT_EVENT_COLUMNS],
        select(func.last_insert_rowid(), *(new[f"event_{name}"] for name in _HOT_EVENT_COLUMNS))
        .where(func.changes() == 1))
    literal = {"dialect": sqlite.dialect(), "compile_kwargs": {"literal_binds": True}}
    body = ";\n".join(str(statement.compile(**literal)) for statement in (call, event))
    ddl = (f"CREATE TEMP VIEW IF NOT EXISTS {view.name} AS SELECT "
           + ", ".join(f"NULL AS {column.name}" for column in columns),
           f"CREATE TEMP TRIGGER IF NOT EXISTS {view.name}_insert INSTEAD OF INSERT ON {view.name} "
           f"BEGIN\n{body};\nEND")
    return ddl, view


_SQLITE_FIRST_WEBHOOK, _first_webhook_view = _sqlite_first_webhook()
_RAW_SQLITE_FIRST_WEBHOOK = RawStatement(_first_webhook_view.insert().values(
    {column.name: bindparam(column.name) for column in _first_webhook_view.columns}))


#: The returning caller's département (see `last_departement`); the incoming call reads it with
#: the directory version in one statement (ivr/service.py).
LAST_DEPARTEMENT = (
    select(Call.departement_code)
    .where(Call.caller_hash == bindparam("caller_hash"), Call.call_sid != bindparam("call_sid"),
           Call.departement_code.is_not(None), Call.started_at >= bindparam("since", type_=UTCDateTime))
    .order_by(Call.started_at.desc()).limit(1))
_LAST_DEPARTEMENT = RawStatement(LAST_DEPARTEMENT)


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


def state_outcome(call: Call, outcome: Outcome) -> None:
    """The flow (or the edge, for a technical failure) states an outcome: precedence decides."""
    current = call.outcome
    if (current is None or call.outcome_inferred
            or (OUTCOME_RANK[outcome], -_OUTCOME_ORDER[outcome])
            > (OUTCOME_RANK[current], -_OUTCOME_ORDER[current])):
        call.outcome, call.outcome_inferred = outcome, False


def state_error(call: Call, *, at: datetime) -> None:
    """The caller heard the technical apology at `at`: a technical failure, unless the call had
    already ended then (a stale or replayed link failing later never changes its outcome)."""
    if _after_hang_up(call, at, HANG_UP_SKEW):
        log.warning("technical failure after the hang-up of call %s: outcome kept", call.call_sid)
        return
    state_outcome(call, Outcome.error)


def _settle(call: Call) -> None:
    """Derive what several facts decide together, so that their order does not matter.

    An outcome nobody stated is inferred once the call has ended: hung up while it rang if a
    line was dialled, abandoned in the menu otherwise. When nobody answered, the wait runs from
    the first ring to the end of the last <Dial> or to the hang-up, whichever came first (a
    Dial's result may be posted a few seconds after the caller hung up).
    """
    # A dial "started" after the hang-up is a replay's (applied before the hang-up was known).
    dialled = (call.dial_started_at is not None
               and not _after_hang_up(call, call.dial_started_at, HANG_UP_SKEW))
    if call.ended_at is not None and (call.outcome is None or call.outcome_inferred):
        call.outcome = Outcome.hung_up_ringing if dialled else Outcome.abandoned
        call.outcome_inferred = True
    if dialled and call.outcome is not Outcome.answered:
        ends = [end for end in (call.dial_ended_at, call.ended_at) if end is not None]
        if ends:
            call.wait_seconds = _seconds(min(ends) - call.dial_started_at)


def _after_hang_up(call: Call, at: datetime, delay: timedelta) -> bool:
    """True when `at` is more than `delay` after the call's known end: what a webhook received
    then reports did not happen during the call (a replay, a retry, a stale link)."""
    return call.ended_at is not None and at > call.ended_at + delay


def _reached(call: Call, at: datetime) -> bool:
    """True when a webhook received at `at` tells where the caller is now: not one older than
    the webhook that set the step, nor one received after the hang-up (a replay, a retry)."""
    if call.ended_at is not None and at > call.ended_at:
        return False
    return call.step_at is None or at >= call.step_at


def apply_flow(db: Session, call: Call, track: dict, *, at: datetime,
               verb_result: bool = False) -> None:
    """Copy what the flow engine reported (step, département, thématique, outcome…) onto the call.

    A finished call's state only moves forward: what a webhook received after the hang-up
    reports is ignored, except the result of the verb that was running then (`verb_result`: a
    <Dial> or <Record> posts it just after the hang-up), for VERB_RESULT_DELAY.
    """
    before = (call.departement_code, call.thematique)
    verb_result = verb_result or bool(track.get("recording_url"))
    if _after_hang_up(call, at, VERB_RESULT_DELAY if verb_result else HANG_UP_SKEW):
        log.warning("webhook of call %s received after its hang-up: its facts are ignored",
                    call.call_sid)
        track = {}
    if _reached(call, at):
        # Where the call is: a late or replayed webhook cannot move it back.
        for fact, column in (("step", "step"), ("departement", "departement_code"),
                             ("thematique", "thematique")):
            if track.get(fact):
                setattr(call, column, track[fact])
        if track.get("step"):
            call.step_at = at
    elif (track.get("departement") or track.get("thematique")) \
            and not _after_hang_up(call, at, timedelta(0)) and _facts_are_latest(db, call, at):
        # An older webhook applied after a newer one (records of one call journaled by two
        # processes are replayed in either order): the step stays, but the département and
        # thématique it knew stand unless a newer webhook stated them.
        for fact, column in (("departement", "departement_code"), ("thematique", "thematique")):
            if track.get(fact):
                setattr(call, column, track[fact])
    if track.get("dialing"):
        call.dial_started_at = min(filter(None, (call.dial_started_at, at)))
    if track.get("closed_reason") and call.closed_reason is None:
        call.closed_reason = track["closed_reason"]
    if track.get("outcome"):
        state_outcome(call, Outcome[track["outcome"]])
    if track.get("recording_url"):
        record_voicemail(db, call, track["recording_url"], track.get("recording_seconds"))
    _settle(call)
    db.flush()
    if (call.departement_code, call.thematique) != before:
        solicitations.sync_call(db, call)
    # Tickets last: they link the call's solicitation row, synchronized just above.
    if track.get("recording_url") and call.recording_url is not None:
        tickets.from_voicemail(db, call, at=at)
    number = _callback_number(db, track)
    if number:
        request_callback(db, call, number, at=at)


def _callback_number(db: Session, track: dict) -> str | None:
    """The number a caller confirmed, sealed in the record (a journal on disk never holds it in
    clear); in clear in records journaled before it was sealed."""
    if track.get("callback_sealed"):
        from flask import current_app

        from ivr.state import unseal
        app = db.info.get("svi.app") or current_app
        return unseal(track["callback_sealed"], app.config["CALLER_HASH_KEY"])
    return track.get("callback_number")


def _facts_are_latest(db: Session, call: Call, at: datetime) -> bool:
    """True when no step event of the call newer than `at` holds the département and
    thématique its webhook's flow was in. Only asked of a webhook applied after a newer one."""
    later = db.scalars(select(CallEvent.data).where(
        CallEvent.call_id == call.id, CallEvent.kind == "step", CallEvent.at > at))
    return not any(FACTS in (data or {}) for data in later)


def record_voicemail(db: Session, call: Call, url: str, seconds: int | None) -> None:
    """A voicemail was left: nobody-answered calls become voicemail calls (`apply_flow` then
    makes it a ticket, once: a replayed or retried recording webhook finds the same one)."""
    if call.recording_url is None:
        call.recording_url, call.recording_seconds = text_policy.clean(url)[:300], seconds
    state_outcome(call, Outcome.voicemail)


def request_callback(db: Session, call: Call, number: str, *, at: datetime) -> None:
    """The caller confirmed a number to be called back on (nobody answered): a callback ticket,
    created once per call. The call's outcome stays what it was (nobody answered). The number is
    stored in clear in the ticket only; logs get it masked."""
    ticket = tickets.from_callback(db, call, number, at=at)
    if ticket is not None:
        log.info("callback ticket %s for call %s (%s)", ticket.number, call.call_sid,
                 mask_number(number))


def find_leg(db: Session, leg_sid: str) -> CallLeg | None:
    """The dialled leg with this CallSid, if known."""
    return db.scalars(select(CallLeg).where(CallLeg.leg_sid == leg_sid)).one_or_none()


def upsert_leg(db: Session, call: Call, leg_sid: str, *, number: str, at: datetime) -> CallLeg:
    """The dialled leg with this CallSid, created on first sight."""
    if not leg_sid:
        raise ValueError("leg webhook without CallSid")
    number = text_policy.clean(number or "")[:32]
    leg = find_leg(db, leg_sid)
    if leg is None:
        _insert_if_new(db, dict(call_id=call.id, leg_sid=leg_sid, number=number,
                                status="initiated", started_at=at), CallLeg.__table__, "leg_sid")
        leg = find_leg(db, leg_sid)
    elif number and not leg.number:
        leg.number = number
    leg.started_at = min(leg.started_at, at)
    return leg


def accept_leg(db: Session, call: Call, leg: CallLeg, *, at: datetime) -> None:
    """The referent pressed the accept key on the whisper.

    The dial result may have been applied first (another worker journaled the acceptance): what
    it says of this leg is applied again, now that the leg is known to be accepted."""
    first = leg.accepted_at is None
    leg.accepted_at = min(filter(None, (leg.accepted_at, at)))
    db.flush()
    if first:
        events = db.scalars(select(CallEvent).where(CallEvent.call_id == call.id,
                                                    CallEvent.kind == "step")
                            .order_by(CallEvent.at, CallEvent.id)).all()
        for event in events:
            dial = (event.data or {}).get(DIAL)
            if dial and dial.get("leg_sid") == leg.leg_sid:
                apply_dial_result(db, call, at=event.at, **dial)


def leg_accepted(db: Session, leg_sid: str | None) -> bool:
    """True when the leg Twilio reports on was accepted on the whisper."""
    if not leg_sid:
        return False
    return db.scalars(select(CallLeg.accepted_at).where(CallLeg.leg_sid == leg_sid)).first() is not None


def apply_dial_result(db: Session, call: Call, *, leg_sid: str | None, status: str | None,
                      duration: int | None, at: datetime) -> None:
    """After <Dial>: note when it ended, who answered and how long they talked.

    A leg accepted on the whisper and connected makes the call answered, whatever the flow
    stated. A dial result received long after the hang-up is a replay: ignored."""
    if _after_hang_up(call, at, VERB_RESULT_DELAY):
        log.warning("dial result of call %s received after its hang-up: ignored", call.call_sid)
        return
    call.dial_ended_at = max(filter(None, (call.dial_ended_at, at)))
    leg = find_leg(db, leg_sid) if leg_sid else None
    if leg is None or leg.accepted_at is None or status != "completed":
        _settle(call)
        db.flush()
        return
    state_outcome(call, Outcome.answered)
    call.answered_number = leg.number
    call.talk_seconds = duration if duration is not None else call.talk_seconds
    if call.dial_started_at:
        call.wait_seconds = _seconds(leg.accepted_at - call.dial_started_at)
    if duration is not None:
        leg.duration_seconds = max(leg.duration_seconds or 0, duration)
    db.flush()


def _apply_status(record: Call | CallLeg, status: str, duration: int | None, at: datetime) -> bool:
    """Move a call or leg forward in its lifecycle; the earliest end and longest duration stick.

    Returns True when `status` is terminal.
    """
    if _advance(record.status, status):
        record.status = status
    if status not in TERMINAL:
        return False
    record.ended_at = min(filter(None, (record.ended_at, at)))
    if duration is not None:
        record.duration_seconds = max(record.duration_seconds or 0, duration)
    return True


def callback_instant(call: Call, at: datetime, received: datetime | None) -> datetime:
    """The instant a callback reports (Twilio's Timestamp), bounded by the call's start and by
    when the callback was received: nothing of a call happens before it started, and no
    callback reports what has not happened yet. Out of bounds: logged and bounded."""
    bounded = max(at, call.started_at)
    if received is not None:
        bounded = min(bounded, max(received, call.started_at))
    if bounded != at:
        log.warning("instant %s of a callback of call %s out of bounds: %s kept",
                    at.isoformat(), call.call_sid, bounded.isoformat())
    return bounded


def apply_call_status(db: Session, call: Call, *, status: str, duration: int | None,
                      at: datetime) -> None:
    """Status callback of the inbound call: idempotent and order-independent."""
    ended = call.ended_at is not None
    _apply_status(call, status, duration, at)
    if call.ended_at is not None and call.step_at is not None and call.step_at > call.ended_at:
        _step_at_hang_up(db, call)
    _settle(call)
    db.flush()
    if not ended and call.ended_at is not None:  # the hang-up: counted once it commits
        observability.call_ended(db, call)


def _step_at_hang_up(db: Session, call: Call) -> None:
    """A webhook received after the hang-up moved the step before the hang-up was known: go back
    to the step the caller had really reached (events keep the step each webhook reached)."""
    db.flush()
    events = db.scalars(select(CallEvent).where(
        CallEvent.call_id == call.id, CallEvent.kind == "step", CallEvent.at <= call.ended_at)
        .order_by(CallEvent.at.desc(), CallEvent.id.desc())).all()
    for event in events:
        reached = (event.data or {}).get(REACHED)
        if reached:
            call.step, call.step_at = reached, event.at
            return


def apply_leg_status(db: Session, leg: CallLeg, *, status: str, duration: int | None,
                     at: datetime) -> None:
    """Status callback of a dialled leg: idempotent and order-independent."""
    _apply_status(leg, status, duration, at)
    db.flush()


def _seconds(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds()))


#: Calls anonymised per transaction: a purge never holds the write lock for long.
PURGE_BATCH = 500


def purge_callers(db: Session, *, before: datetime, batch: int = PURGE_BATCH) -> int:
    """Forget who called before `before`, one batch: hash and masked number are erased, events
    emptied, unmatched callbacks deleted; counts remain. Returns how many calls were purged:
    the edge commits and calls again until 0, so that each transaction stays short."""
    ids = db.scalars(select(Call.id).where(
        Call.started_at < before,
        Call.caller_hash.is_not(None) | (Call.caller_masked != "purgé")).limit(batch)).all()
    if ids:
        db.execute(update(Call).where(Call.id.in_(ids)).values(caller_hash=None, caller_masked="purgé")
                   .execution_options(synchronize_session=False))
        db.execute(update(CallEvent).where(CallEvent.call_id.in_(ids)).values(data={}, kind="purged")
                   .execution_options(synchronize_session=False))
    db.execute(delete(UnmatchedCallback).where(UnmatchedCallback.received_at < before)
               .execution_options(synchronize_session=False))
    db.flush()
    return len(ids)
