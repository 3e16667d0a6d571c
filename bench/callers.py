"""Calls placed as Twilio places them, against live servers: the load of the fault tests
(tests/test_outage.py) and of the soak (bench/soak.py).

Each call follows the TwiML it gets (the real `ivr.simulator.Emulator`, over HTTP), signed,
with its leg and call status callbacks, and every answer is kept so that it can be checked.
When a request fails at the connection (a worker killed while it held it), the caller's side
does what Twilio does: a request for TwiML (the Voice URL, an action URL) is followed at once by
a request to the number's Fallback URL (`/ivr/fallback`, with `ErrorCode` 11200 and `ErrorUrl`:
"If Twilio is unable to retrieve or execute TwiML from your web server, a request is immediately
made to the number's Fallback URL", twilio.com/docs/usage/security/availability-reliability); a
status callback (call or leg) is sent once more (Twilio's connection override `rc`, "the number
of retry attempts Twilio will make if its connection to your webhook fails", defaults to 1:
twilio.com/docs/usage/webhooks/webhooks-connection-overrides). The referent's whisper, whose
Fallback Twilio does not document, is modelled the same way (sent once more).

What the database holds for a call is read back as a *shape*: what must be the same for two
calls of the same scenario (outcome, département, legs, events in order, tickets…), without what
differs from one call to another (SIDs, instants).
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from defusedxml import ElementTree
from sqlalchemy import create_engine, select

from ivr.simulator import Emulator, Referent, Transcript, new_sid

#: What a request cut at the connection raises.
TRANSPORT_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                    socket.timeout, OSError)
#: Requests Twilio sends again once when their connection fails (no TwiML is fetched, or it is
#: the referent's leg); the caller's own TwiML requests go to the Fallback URL instead.
RETRIED_PATHS = ("/ivr/status", "/ivr/leg-status", "/ivr/whisper", "/ivr/whisper/result")
FALLBACK_PATH = "/ivr/fallback"
#: Event kind each webhook leaves (tracking/models.py CallEvent.kind).
EVENT_KIND = {"/ivr/voice": "step", "/ivr/step": "step", "/ivr/status": "status",
              "/ivr/leg-status": "leg-status", "/ivr/whisper": "whisper",
              "/ivr/whisper/result": "whisper", FALLBACK_PATH: "error"}
#: Words of the technical apology (prompts/fr.yaml, `technical_error`).
APOLOGY = "difficulté technique"


@dataclass(frozen=True)
class Scenario:
    """One kind of call: the caller's keys, what the referents do, what must be recorded."""

    name: str
    keys: tuple
    departement: str | None
    outcome: str
    referents: tuple = ()
    voicemail_seconds: int = 0
    hang_up_after: int | None = None
    #: <Dial>s the caller reaches (the département is open and has lines): its lines, all at
    #: once or one after the other (`expected_dials`), the first `dials` of them.
    dials: int = 0
    #: Ticket kinds the call makes (a voicemail, a callback request).
    tickets: tuple = ()


_NOBODY = Referent("no-answer")
#: Callers choose among these; the demo directory's départements (directory/operations.py DEMO)
#: are open whenever the tests run (see `open_all_day`).
SCENARIOS = {s.name: s for s in (
    Scenario("answered-75", ("75", "1", "2"), "75", "answered",
             referents=(Referent("accept", talk_seconds=42),), dials=1),
    Scenario("voicemail-93", ("93", "1", "1", "3"), "93", "voicemail",
             referents=(_NOBODY, _NOBODY), voicemail_seconds=20, dials=2,
             tickets=("voicemail",)),
    Scenario("callback-93", ("93", "1", "4", "1"), "93", "no_answer",
             referents=(_NOBODY, _NOBODY), dials=2, tickets=("callback",)),
    Scenario("menu-hangup", ("75",), "75", "abandoned", hang_up_after=2),
    Scenario("ringing-hangup-57", ("57", "1", "9"), "57", "hung_up_ringing",
             referents=(Referent("caller-hangup"),), dials=1),
    Scenario("answered-2A", ("20", "1", "1", "3"), "2A", "answered",
             referents=(Referent("accept", talk_seconds=30),), dials=1),
    Scenario("no-assistance-974", ("974",), "974", "no_phone_assistance"),
)}


@dataclass
class Placed:
    """A call placed by the load: its scenario, what happened, when (monotonic seconds)."""

    scenario: Scenario
    transcript: Transcript
    started: float
    ended: float = 0.0
    #: The exception that stopped the call on the caller's side, if any (never expected).
    error: str | None = None


class Twilio(Emulator):
    """Twilio's side over HTTP, against one or several servers (a load balancer's choice: a
    random one per request), keeping every answer and modelling a failed connection."""

    def __init__(self, servers: list[str], *, auth_token: str, public_base: str,
                 timeout: float = 15.0, rng: random.Random | None = None):
        super().__init__(_Transport(self), auth_token=auth_token, public_base=public_base)
        self.servers, self.timeout = [s.rstrip("/") for s in servers], timeout
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        #: (CallSid, URL, status, body, seconds) of every answered request.
        self.answers: list[tuple[str, str, int, str, float]] = []
        #: (CallSid, URL, error) of every request whose connection failed.
        self.cut: list[tuple[str, str, str]] = []

    # The transport (the Emulator calls `self.transport.post`).
    def post_http(self, url: str, params: dict, headers: dict) -> tuple[int, str]:
        """POST to one of the servers, as the public URL says; raises on a connection failure."""
        parts = urlsplit(url)
        target = self.rng.choice(self.servers) + parts.path + (f"?{parts.query}" if parts.query else "")
        req = urllib.request.Request(target, data=urllib.parse.urlencode(params).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def post(self, t: Transcript, url: str, params: dict, *, signed: bool = True) -> tuple[int, str]:
        started = time.monotonic()
        try:
            status, body = super().post(t, url, params, signed=signed)
        except TRANSPORT_ERRORS as exc:
            with self._lock:
                self.cut.append((t.call_sid, url, repr(exc)))
            if urlsplit(url).path in RETRIED_PATHS:
                status, body = super().post(t, url, params, signed=signed)
            else:
                status, body = super().post(t, self.public_base + FALLBACK_PATH,
                                            dict(params, ErrorCode="11200", ErrorUrl=url),
                                            signed=signed)
        with self._lock:
            self.answers.append((t.call_sid, url, status, body, time.monotonic() - started))
        return status, body

    def place(self, scenario: Scenario, caller: str, call_sid: str | None = None) -> Placed:
        """Place one call of `scenario` from `caller`, with its final status callback."""
        sid = call_sid or new_sid()
        placed = Placed(scenario, Transcript(call_sid=sid), time.monotonic())
        try:
            placed.transcript = self.call(
                caller=caller, keys=list(scenario.keys), referents=list(scenario.referents),
                voicemail_seconds=scenario.voicemail_seconds, call_sid=sid,
                hang_up_after=scenario.hang_up_after)
        except Exception as exc:  # noqa: BLE001 - kept and reported by the checks
            placed.error = repr(exc)
        placed.ended = time.monotonic()
        return placed


class _Transport:
    """What the Emulator posts through: `post(url, params, headers)`."""

    def __init__(self, twilio: Twilio):
        self.twilio = twilio

    def post(self, url, params, headers):
        return self.twilio.post_http(url, params, headers)


class Callers:
    """Distinct French mobile numbers, never seen before by the database (no returning-caller
    offer, which would change what the menu asks)."""

    def __init__(self, rng: random.Random):
        self._next, self._lock = rng.randrange(10 ** 7), threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._next += 1
            return f"+336{self._next % 10 ** 8:08d}"


def run_load(twilio: Twilio, *, seconds: float, rate: float, choose, concurrency: int = 16,
             on_tick=None) -> list[Placed]:
    """Place calls at `rate` per second for `seconds` from a pool of `concurrency` threads;
    `choose(elapsed)` gives each call's scenario, `on_tick(elapsed)` is called between calls (it
    may take its time: the schedule catches up). Returns every call placed, once all ended."""
    callers, started, futures = Callers(twilio.rng), time.monotonic(), []
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="caller") as pool:
        while (elapsed := time.monotonic() - started) < seconds:
            futures.append(pool.submit(twilio.place, choose(elapsed), callers.next()))
            if on_tick is not None:
                on_tick(elapsed)
            time.sleep(max(0.0, started + len(futures) / rate - time.monotonic()))
    return [f.result() for f in futures]


# -- checks ----------------------------------------------------------------------------------
def twiml_problems(twilio: Twilio) -> list[str]:
    """Answers that are not a 200 with a TwiML document (a <Response>)."""
    problems = []
    for sid, url, status, body, _seconds in twilio.answers:
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            root = None
        if status != 200 or root is None or root.tag != "Response":
            problems.append(f"{sid} {urlsplit(url).path}: HTTP {status} {body[:120]!r}")
    return problems


def expected_dials(database_url: str) -> dict[str, list[list[str]]]:
    """The <Dial>s a caller of each département must get: its active lines, all at once or one
    after the other (its ring strategy), as the database holds them before the load."""
    from directory.models import Departement, Line
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            strategies = {code: strategy for code, strategy in conn.execute(
                select(Departement.code, Departement.ring_strategy))}
            lines: dict[str, list[str]] = {}
            for code, number in conn.execute(select(Line.departement_code, Line.number)
                                             .where(Line.active).order_by(Line.departement_code,
                                                                          Line.position)):
                lines.setdefault(code, []).append(number)
    finally:
        engine.dispose()
    return {code: ([numbers] if strategies[code].name == "simultaneous"
                   else [[n] for n in numbers]) for code, numbers in lines.items()}


def placed_shape(placed: Placed) -> dict:
    """What the database must hold for a call, from what Twilio sent: one event per webhook
    answered, in order, and one leg per dialled line that called back."""
    events, legs = [], set()
    for url, params, status in placed.transcript.requests:
        path = urlsplit(url).path
        events.append(EVENT_KIND[path])
        if path in ("/ivr/leg-status", "/ivr/whisper", "/ivr/whisper/result"):
            legs.add(params["CallSid"])
    return {"events": events, "legs": len(legs)}


def stored_calls(database_url: str, sids=None) -> dict[str, dict]:
    """Every call the database holds (or those of `sids`), by CallSid, as comparable shapes."""
    from tickets.models import Ticket
    from tracking.models import Call, CallEvent, CallLeg, Solicitation
    engine = create_engine(database_url)
    calls: dict[str, dict] = {}
    try:
        with engine.connect() as conn:
            query = select(Call)
            if sids is not None:
                query = query.where(Call.call_sid.in_(list(sids)))
            ids = {}
            for row in conn.execute(query).mappings():
                ids[row["id"]] = row["call_sid"]
                calls.setdefault(row["call_sid"], {"rows": 0})
                shape = calls[row["call_sid"]]
                shape["rows"] += 1
                shape.update({k: (v.name if hasattr(v, "name") else v) for k, v in row.items()
                              if k in ("status", "outcome", "departement_code", "thematique",
                                       "talk_seconds", "duration_seconds", "answered_number",
                                       "recording_seconds", "closed_reason", "test", "step",
                                       "outcome_inferred", "caller_masked", "called_number")})
                shape.update(legs=[], events=[], solicitations=0, tickets=[])

            def of(call_id):
                return calls[ids[call_id]] if call_id in ids else None
            for leg in conn.execute(select(CallLeg).order_by(CallLeg.id)).mappings():
                if (shape := of(leg["call_id"])) is not None:
                    shape["legs"].append((leg["number"], leg["status"],
                                          leg["accepted_at"] is not None, leg["duration_seconds"]))
            for ev in conn.execute(select(CallEvent.call_id, CallEvent.kind, CallEvent.step,
                                          CallEvent.data)
                                   .order_by(CallEvent.call_id, CallEvent.at, CallEvent.id)):
                if (shape := of(ev.call_id)) is not None:
                    shape["events"].append((ev.kind, ev.step, tuple(sorted(ev.data or {}))))
            for call_id in conn.scalars(select(Solicitation.call_id)
                                        .where(Solicitation.call_id.is_not(None))):
                if (shape := of(call_id)) is not None:
                    shape["solicitations"] += 1
            for call_id, kind in conn.execute(select(Ticket.call_id, Ticket.kind)
                                              .where(Ticket.call_id.is_not(None))):
                if (shape := of(call_id)) is not None:
                    shape["tickets"].append(kind.name)
    finally:
        engine.dispose()
    for shape in calls.values():
        shape["legs"].sort(key=lambda leg: (leg[0], leg[1]))
        shape["tickets"].sort()
    return calls


def call_problems(placed: Placed, record: dict | None, dials: dict, *, cut: bool = False,
                  when: str = "") -> list[str]:
    """What is wrong with one call placed, as the database holds it (`stored_calls`): stored
    once, one event per webhook answered in order, one leg per line that called back; unless
    `cut` (a request of it failed at the connection): routed to its département's lines, no
    apology heard, the outcome, solicitation and tickets of its scenario."""
    s, t = placed.scenario, placed.transcript
    when = f"{s.name} {t.call_sid}{when}"
    if placed.error:
        return [f"{when}: stopped on the caller's side: {placed.error}"]
    if record is None:
        return [f"{when}: not in the database"]
    problems, expected = [], placed_shape(placed)
    if record["rows"] != 1:
        problems.append(f"{when}: {record['rows']} rows")
    if [kind for kind, _, _ in record["events"]] != expected["events"]:
        problems.append(f"{when}: events {[e[:2] for e in record['events']]} for webhooks "
                        f"{expected['events']}")
    if len(record["legs"]) != expected["legs"]:
        problems.append(f"{when}: legs {record['legs']}")
    if cut:
        return problems
    if APOLOGY in " ".join(t.heard):
        problems.append(f"{when}: heard the apology")
    if t.dialled != dials.get(s.departement, [])[:s.dials]:
        problems.append(f"{when}: dialled {t.dialled}")
    if (record["outcome"], record["departement_code"]) != (s.outcome, s.departement):
        problems.append(f"{when}: {record['outcome']} in {record['departement_code']}")
    if record["tickets"] != sorted(s.tickets) or record["solicitations"] != 1:
        problems.append(f"{when}: tickets {record['tickets']}, {record['solicitations']} "
                        "solicitation(s)")
    return problems


#: What differs between two calls of one scenario: the caller, and what the caller's number
#: changes in the events (none: they are masked the same way).
PERSONAL = ("caller_masked",)


def comparable(shape: dict) -> dict:
    """A stored shape without what differs from one call of a scenario to another."""
    return {k: v for k, v in shape.items() if k not in PERSONAL}



def open_all_day(database_url: str, codes, *, days: int = 2) -> None:
    """Open `codes` from yesterday to `days` days ahead, 00:00–23:59:59 local time (exceptional
    openings win over weekly hours and holidays), so that calls are routed whenever the load
    runs; the directory's version is bumped as any edit does."""
    from datetime import date, time as clock_time, timedelta
    from directory.models import DateException, DirectoryState, ExceptionKind
    from sqlalchemy import insert, update
    today = date.today()
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(DateException), [
                dict(departement_code=code, kind=ExceptionKind.opening,
                     start_date=today - timedelta(days=1), end_date=today + timedelta(days=days),
                     start_time=clock_time(0, 0), end_time=clock_time(23, 59, 59),
                     reason="test de charge") for code in codes])
            if conn.execute(update(DirectoryState).values(version=DirectoryState.version + 1)
                            ).rowcount == 0:
                conn.execute(insert(DirectoryState).values(id=1, version=1))
    finally:
        engine.dispose()
