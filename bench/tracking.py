"""`python -m bench.tracking`: « Mes appels » and the national dashboard over 1,000,000 calls,
side by side with their data read by one hand-written SQL statement.

One database per backend (SQLite, then a throwaway PostgreSQL cluster) is migrated, seeded with
the 101 départements and the motif taxonomy through the real operations, then filled with
1,000,000 calls and 1,200,000 solicitations over about 18 months: bulk inserts (SQLite: one
transaction of executemany batches; PostgreSQL: COPY) of exactly the rows the call tracking and
the qualification write. Big départements get more calls; office hours, weekdays, outcomes,
unqualified rows, calls split into 2 or 3 motifs, solicitations from other channels, calls
that reached no département and simulator test calls are all there. Three users (a referent of
one département, a referent of two, the national team) log in through the real login form.

Each page is then requested in-process with Flask's test client, and, interleaved with it, one
hand-written SQL statement returning the same data runs on a connection of the same engine (the
floor). Every answer is checked (status 200, expected text, no form error; on the first round
the rows or figures the page shows are compared with the SQL's), so an error page or a filter
silently dropped cannot be measured by mistake.

`--explain PAGE` prints the plans of the statements a page runs, `--profile PAGE` its costliest
functions; `--keep DIR` builds the SQLite database once and reuses it.

This module owns the data set, the pages and their checks; timing and report: bench/harness.py.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from bench import harness
from bench.harness import Html, Page, Timings

RESULTS = Path(__file__).with_name("results") / "tracking.md"
#: The issue's targets: « Mes appels » p95 under 200 ms, the national dashboard under 1 s.
TARGET_CALLS_MS = 200.0
TARGET_DASHBOARD_MS = 1000.0
PASSWORD = "un mot de passe de banc d'essai"
#: The instant the pages are asked about: Tuesday 15 December 2026, 12:00 in Paris.
DEFAULT_AT = datetime(2026, 12, 15, 11, 0, tzinfo=UTC)
#: First local day with calls: about 18 months of history before DEFAULT_AT.
FIRST_DAY = date(2025, 7, 1)
#: The dashboard's quarter (complete, about a sixth of the calls).
QUARTER = "2026-Q3"
#: Rough populations (hundreds of thousands) of the biggest départements: calls follow them.
BIG = {"59": 26, "75": 21, "13": 20, "69": 19, "92": 16, "93": 17, "33": 17, "62": 14,
       "78": 14, "77": 14, "94": 14, "31": 14, "44": 14, "91": 13, "95": 12, "76": 12,
       "06": 11, "67": 11, "34": 12, "38": 13, "974": 9, "35": 11, "83": 11, "57": 10}
#: Départements that offer no phone assistance (their calls end on the message saying so).
NO_PHONE = ("23", "48", "976")
#: Calls per local hour of the day (relative): the office hours get most of them.
HOUR_WEIGHTS = (1, .5, .3, .3, .3, .5, 1, 3, 8, 14, 16, 15, 9, 8, 14, 15, 12, 7, 4, 3, 2, 2,
                1.5, 1)
#: How calls that reached an open département ended (the others: out of hours, no assistance).
OPEN_OUTCOMES = (("answered", 62), ("no_answer", 10), ("hung_up_ringing", 8),
                 ("abandoned", 8), ("voicemail", 6), ("out_of_hours", 3), ("error", 1),
                 (None, 0.3))
CHANNELS = (("email", 55), ("form", 25), ("phone_direct", 15), ("other", 5))
COMMENTS = ("", "", "", "", "", "", "rappel demandé", "mot de passe réinitialisé",
            "voir ticket 4521", "demande transmise au niveau national",
            "l'usager rappellera après la mise à jour")
#: Crockford's base32, as references are written (tracking.solicitations).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BATCH = 20_000


@dataclass(frozen=True)
class Sizes:
    """How much data the database holds (the issue's figures by default)."""

    calls: int = 1_000_000
    solicitations: int = 1_200_000
    #: How far down (in rows) the deep page of « Mes appels » starts.
    deep: int = 200_000


@dataclass(frozen=True)
class User:
    """One account the pages are requested as."""

    email: str
    role: str  # accounts.models.Role name
    codes: tuple[str, ...] = ()


USERS = {
    "ref1": User("referent.93.bench@example.gouv.fr", "referent", ("93",)),
    "ref2": User("referent.nord.bench@example.gouv.fr", "referent", ("59", "62")),
    "national": User("national.bench@example.gouv.fr", "national"),
}


@dataclass
class Dataset:
    """What the builder made, as the pages and the SQL statements need it."""

    url: str
    at: datetime
    #: Every département's timezone, by code.
    zones: dict[str, str]
    #: The deep page's cursor: (occurred_at, id) of the row `Sizes.deep` rows down.
    deep_cursor: tuple[datetime, int] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    built_seconds: float = 0.0


# --- the data ------------------------------------------------------------------------------

def reference(row_id: int) -> str:
    """A distinct, random-looking reference ("S-" and 10 of Crockford's characters) per id."""
    n = (row_id * 0x9E3779B97F4A7C15 + 0x5851F42D) % 32 ** 10
    chars = []
    for _ in range(10):
        n, k = divmod(n, 32)
        chars.append(ALPHABET[k])
    return "S-" + "".join(chars)


class _Clock:
    """Random local instants over the history: more on weekdays and in office hours, and a
    little more as time goes on (the service gets known)."""

    def __init__(self, first: date, last: date, rng: random.Random):
        self.days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        span = max(len(self.days) - 1, 1)
        weights = [(1 + 0.5 * n / span) * (1 if d.weekday() < 5 else 0.08)
                   for n, d in enumerate(self.days)]
        self.cum_days = list(_cumulate(weights))
        self.cum_hours = list(_cumulate(HOUR_WEIGHTS))
        self.rng = rng

    def instants(self, k: int) -> list[datetime]:
        """`k` naive local instants."""
        rng = self.rng
        days = rng.choices(self.days, cum_weights=self.cum_days, k=k)
        hours = rng.choices(range(24), cum_weights=self.cum_hours, k=k)
        return [datetime(d.year, d.month, d.day, h, *divmod(rng.randrange(3600), 60),
                         rng.randrange(1_000_000)) for d, h in zip(days, hours)]


def _cumulate(weights) -> Iterator[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


def _is_open(local: datetime) -> bool:
    """Within the default weekly slots (Monday–Friday 09:30–11:30 and 14:00–16:30)."""
    if local.weekday() >= 5:
        return False
    minutes = local.hour * 60 + local.minute
    return 570 <= minutes < 690 or 840 <= minutes < 990


def generate(sizes: Sizes, codes: list[str], zones: dict[str, str], taxonomy, first: date,
             last: date, rng: random.Random) -> Iterator[tuple[list[dict], list[dict]]]:
    """Batches of (calls, solicitations) rows, oldest first, ids in time order, as the app
    writes them: the call recorded by the webhooks, its row created by `sync_call` (the
    thématique chosen in the menu copied), qualified or not by a referent, sometimes split into
    2 or 3 motifs (`split`); rows added by hand for the other channels (`add`).

    `taxonomy` is a list of (thématique id, key, [(motif id, [sous-motif ids])]).
    """
    from tracking.models import Channel, Outcome, Source

    clock = _Clock(first, last, rng)
    tz = {code: ZoneInfo(name) for code, name in zones.items()}
    weights = [BIG.get(code, 2 + 4 * random.Random(code).random()) for code in codes]
    cum_codes = list(_cumulate(weights))
    # Thématique weights: the technical ones most, « Réglementation » rarely.
    them_weights = list(_cumulate([{"assistance_technique": 35, "usage": 30, "habilitations": 20,
                                    "annuaire": 8, "reglementaire": 3}.get(key, 4)
                                   for _, key, _ in taxonomy]))
    outcomes = [Outcome[name] if name else None for name, _ in OPEN_OUTCOMES]
    cum_outcomes = list(_cumulate(w for _, w in OPEN_OUTCOMES))
    channels = [Channel[name] for name, _ in CHANNELS]
    cum_channels = list(_cumulate(w for _, w in CHANNELS))
    callers = 250_000
    hashes: dict[int, str] = {}

    # Every call: when, where; then what it became (a row, split or not; none).
    n = sizes.calls
    locals_ = clock.instants(n)
    call_codes = rng.choices(codes, cum_weights=cum_codes, k=n)
    plan = []  # (utc, local, code or None, test, parts)
    derived = 0
    for local, code in zip(locals_, call_codes):
        r = rng.random()
        if r < 0.03:  # hung up or typed an invalid code before reaching a département
            plan.append((local.replace(tzinfo=tz["75"]).astimezone(UTC), local, None, False, 0))
            continue
        test = r < 0.032
        parts = 0 if test else (1 if rng.random() < 0.87 else 2 if rng.random() < 0.8 else 3)
        derived += parts
        plan.append((local.replace(tzinfo=tz[code]).astimezone(UTC), local, code, test, parts))
    manual = sizes.solicitations - derived
    if manual < 0:
        raise ValueError(f"{sizes.calls} calls make {derived} rows, more than "
                         f"{sizes.solicitations} solicitations")
    plan.sort(key=lambda p: p[0])
    others = sorted(((local.replace(tzinfo=tz[code]).astimezone(UTC), local, code)
                     for local, code in zip(clock.instants(manual),
                                            rng.choices(codes, cum_weights=cum_codes,
                                                        k=manual))),
                    key=lambda o: o[0])

    def qualification(them_index: int | None, qualified: bool):
        """(thématique id, motif id, sous-motif id) of a row."""
        if them_index is None:
            them_index = rng.choices(range(len(taxonomy)), cum_weights=them_weights)[0]
        them_id, _, motifs = taxonomy[them_index]
        if not qualified or not motifs:
            return them_id, None, None
        motif_id, sous = rng.choice(motifs)
        return them_id, motif_id, (rng.choice(sous) if sous and rng.random() < 0.6 else None)

    def solicitation(row_id, at, code, channel, call_id, primary, them, source):
        them_id, motif_id, sous_id = them
        qualified = motif_id is not None
        created = at if source is Source.svi else at + timedelta(minutes=rng.randrange(5, 4000))
        return {"id": row_id, "reference": reference(row_id), "departement_code": code,
                "occurred_at": at, "channel": channel, "call_id": call_id,
                "is_primary": primary, "thematique_id": them_id, "motif_id": motif_id,
                "sous_motif_id": sous_id,
                "comment": rng.choice(COMMENTS) if qualified else "",
                "resolved_first_level": (rng.random() < 0.8) if qualified else None,
                "escalated": (rng.random() < 0.07) if qualified else None,
                "source": source, "fingerprint": None, "created_at": created,
                "updated_at": created + timedelta(days=rng.randrange(0, 3)) if qualified
                else created}

    calls: list[dict] = []
    rows: list[dict] = []
    row_id = 0
    j = 0  # next row from the other channels
    for call_id, (at, local, code, test, parts) in enumerate(plan, start=1):
        while j < len(others) and others[j][0] <= at:
            o_at, _, o_code = others[j]
            row_id += 1
            rows.append(solicitation(
                row_id, o_at, o_code, channels[rng.choices(range(4), cum_weights=cum_channels)[0]],
                None, True, qualification(None, rng.random() < 0.85), Source.manual))
            j += 1
        caller = rng.randrange(callers)
        hidden = caller % 25 == 0
        if not hidden and caller not in hashes:
            hashes[caller] = hashlib.sha256(f"appelant {caller}".encode()).hexdigest()
        them_index = rng.choices(range(len(taxonomy)), cum_weights=them_weights)[0]
        wait = talk = None
        closed_reason = None
        step = "dial"
        if code is None:
            outcome = Outcome.abandoned if rng.random() < 0.7 else Outcome.invalid_departement
            step, them_key = "departement", None
        else:
            them_key = taxonomy[them_index][1]
            if code in NO_PHONE:
                outcome, step = Outcome.no_phone_assistance, "no_phone_assistance"
            elif not _is_open(local) and rng.random() < 0.97:
                outcome, step, closed_reason = Outcome.out_of_hours, "closed", "outside_hours"
            else:
                outcome = rng.choices(outcomes, cum_weights=cum_outcomes)[0]
            if outcome is Outcome.out_of_hours and closed_reason is None:
                closed_reason, step = rng.choice(("holiday", "closure")), "closed"
            elif outcome is Outcome.abandoned:
                step, them_key = "motif", None
            elif outcome is Outcome.voicemail:
                step, wait = "voicemail", rng.randrange(20, 61)
            elif outcome is Outcome.no_answer:
                wait = rng.randrange(20, 61)
            elif outcome is Outcome.hung_up_ringing:
                wait = rng.randrange(2, 30)
            elif outcome is Outcome.answered:
                wait, talk = rng.randrange(3, 60), rng.randrange(30, 900)
        menu = rng.randrange(15, 60)
        duration = menu + (wait or 0) + (talk or 0) + (rng.randrange(20, 90)
                                                       if outcome is Outcome.voicemail else 0)
        dialled = wait is not None
        calls.append({
            "id": call_id, "call_sid": f"CA{call_id:032x}",
            "caller_hash": None if hidden else hashes[caller],
            "caller_masked": "masqué" if hidden else f"+336••••••{caller % 100:02d}",
            "called_number": "+33806000156",
            "status": "in-progress" if outcome is None else "completed",
            "started_at": at, "ended_at": None if outcome is None else at + timedelta(
                seconds=duration),
            "duration_seconds": None if outcome is None else duration,
            "departement_code": code, "thematique": them_key, "test": test, "outcome": outcome,
            "outcome_inferred": outcome is Outcome.hung_up_ringing and rng.random() < 0.5,
            "closed_reason": closed_reason, "step": step,
            "step_at": at + timedelta(seconds=menu),
            "wait_seconds": wait, "talk_seconds": talk,
            "answered_number": "+33199000101" if talk is not None else None,
            "dial_started_at": at + timedelta(seconds=menu) if dialled else None,
            "dial_ended_at": at + timedelta(seconds=menu + wait) if dialled else None,
            "recording_url": (f"https://api.twilio.com/recordings/RE{call_id:032x}"
                              if outcome is Outcome.voicemail else None),
            "recording_seconds": rng.randrange(5, 90) if outcome is Outcome.voicemail else None,
            "updated_at": at + timedelta(seconds=duration)})
        for part in range(parts):
            row_id += 1
            qualified = parts > 1 or rng.random() < 0.7
            rows.append(solicitation(
                row_id, at, code, Channel.phone_svi, call_id, part == 0,
                qualification(them_index if part == 0 else None, qualified), Source.svi))
        if len(rows) >= BATCH:
            yield calls, rows
            calls, rows = [], []
    for o_at, _, o_code in others[j:]:
        row_id += 1
        rows.append(solicitation(
            row_id, o_at, o_code, channels[rng.choices(range(4), cum_weights=cum_channels)[0]],
            None, True, qualification(None, rng.random() < 0.85), Source.manual))
    if calls or rows:
        yield calls, rows


def _copy(raw, table: str, rows: list[dict]) -> None:
    """PostgreSQL COPY of dict rows; enums written by name, as SQLAlchemy stores them."""
    import enum
    if not rows:
        return
    columns = list(rows[0])
    with raw.cursor() as cur, cur.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([v.name if isinstance(v, enum.Enum) else v for v in row.values()])


def build(url: str, sizes: Sizes = Sizes(), at: datetime = DEFAULT_AT,
          rng: random.Random | None = None, progress: Callable[[str], None] | None = None
          ) -> Dataset:
    """Migrate a fresh database and fill it: départements, taxonomy, users, calls, rows."""
    from sqlalchemy import insert, select, text, update
    from sqlalchemy.orm import Session

    from accounts import operations as accounts
    from accounts.models import Role
    from audit.operations import Actor
    from core.cli import upgrade
    from core.db import make_engine
    from directory.models import Departement
    from directory.operations import seed_departements
    from tracking.models import Call, Solicitation, Thematique
    from tracking.taxonomy import load_file

    rng = rng or random.Random(20261215)
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as db:
            seed_departements(db)
            load_file(db)
            db.execute(update(Departement).where(Departement.code.in_(NO_PHONE))
                       .values(phone_assistance=False))
            for user in USERS.values():
                accounts.create(db, Actor.cli(), email=user.email, role=Role[user.role],
                                departements=list(user.codes), password=PASSWORD)
            db.commit()
            zones = dict(db.execute(select(Departement.code, Departement.timezone)).all())
            taxonomy = [(t.id, t.key, [(m.id, [s.id for s in m.sous_motifs]) for m in t.motifs])
                        for t in db.scalars(select(Thematique).order_by(Thematique.position))]
        codes = sorted(zones)
        last = (at - timedelta(days=1)).date()
        batches = generate(sizes, codes, zones, taxonomy, FIRST_DAY, last, rng)
        done = 0
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                for calls, rows in batches:
                    _copy(raw.driver_connection, "calls", calls)
                    _copy(raw.driver_connection, "solicitations", rows)
                    done += len(rows)
                    if done // 200_000 != (done - len(rows)) // 200_000:
                        say(f"  {done:,} solicitations")
                raw.commit()
            finally:
                raw.close()
            with engine.connect() as conn:
                for table in ("calls", "solicitations"):
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                      f"(SELECT max(id) FROM {table}))"))
                conn.commit()
            # What autovacuum would have done by the time anyone reads the dashboard.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE calls"))
                conn.execute(text("VACUUM ANALYZE solicitations"))
        else:
            with engine.begin() as conn:
                for calls, rows in batches:
                    if calls:
                        conn.execute(insert(Call), calls)
                    conn.execute(insert(Solicitation), rows)
                    done += len(rows)
                    if done // 200_000 != (done - len(rows)) // 200_000:
                        say(f"  {done:,} solicitations")
    finally:
        engine.dispose()
    data = describe(url, sizes, at)
    data.built_seconds = time.perf_counter() - started
    return data


def describe(url: str, sizes: Sizes = Sizes(), at: datetime = DEFAULT_AT) -> Dataset:
    """What the pages and the statements need of a database already built: timezones, the deep
    page's cursor, counts."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from core.db import make_engine
    from directory.models import Departement
    from tracking.models import Call, Solicitation

    engine = make_engine(url)
    try:
        with Session(engine) as db:
            zones = dict(db.execute(select(Departement.code, Departement.timezone)).all())
            depth = min(sizes.deep, max(sizes.solicitations - 60, 0))
            cursor = db.execute(select(Solicitation.occurred_at, Solicitation.id)
                                .order_by(Solicitation.occurred_at.desc(),
                                          Solicitation.id.desc())
                                .offset(depth).limit(1)).one_or_none()
            counts = {
                "calls": db.scalar(select(func.count()).select_from(Call)),
                "solicitations": db.scalar(select(func.count()).select_from(Solicitation)),
                "extra motif rows (split calls)": db.scalar(
                    select(func.count()).select_from(Solicitation)
                    .where(Solicitation.is_primary.is_(False))),
                "rows without a call": db.scalar(
                    select(func.count()).select_from(Solicitation)
                    .where(Solicitation.call_id.is_(None))),
                "rows to qualify": db.scalar(
                    select(func.count()).select_from(Solicitation)
                    .where(Solicitation.motif_id.is_(None))),
                "rows above the deep page": depth,
            }
    finally:
        engine.dispose()
    return Dataset(url=url, at=at, zones=zones,
                   deep_cursor=(cursor[0], cursor[1]) if cursor else None, counts=counts)


def clients(app) -> dict:
    """One test client per user, logged in through the real login form."""
    return {key: harness.login(app.test_client(), user.email, PASSWORD)
            for key, user in USERS.items()}


# --- the pages and their floors ------------------------------------------------------------

_LIST_SQL = """
SELECT s.reference, s.occurred_at, s.departement_code, c.caller_masked, s.channel, c.outcome,
       c.wait_seconds, c.talk_seconds, t.label, m.label, sm.label, s.call_id, s.is_primary,
       s.comment, s.id
  FROM solicitations s
  LEFT JOIN calls c ON c.id = s.call_id
  LEFT JOIN thematiques t ON t.id = s.thematique_id
  LEFT JOIN motifs m ON m.id = s.motif_id
  LEFT JOIN sous_motifs sm ON sm.id = s.sous_motif_id{where}
 ORDER BY s.occurred_at DESC, s.id DESC
 LIMIT 51"""

#: The headline figures of tracking/indicators.py in one aggregate: a call counts when it
#: reached a département, is no test call, and started within the period's local dates of its
#: département (`bounds`: one UTC range per département of the scope).
_FIGURES_SQL = """{bounds}
SELECT count(*) AS received,
       sum(CASE WHEN c.outcome = 'answered' THEN 1 ELSE 0 END) AS answered,
       sum(CASE WHEN c.outcome = 'out_of_hours' THEN 1 ELSE 0 END) AS out_of_hours,
       sum(CASE WHEN c.outcome = 'no_phone_assistance' THEN 1 ELSE 0 END) AS no_phone,
       sum(CASE WHEN c.outcome = 'abandoned' THEN 1 ELSE 0 END) AS abandoned,
       sum(CASE WHEN c.outcome = 'no_answer' THEN 1 ELSE 0 END) AS no_answer,
       sum(CASE WHEN c.outcome = 'hung_up_ringing' THEN 1 ELSE 0 END) AS hung_up,
       sum(CASE WHEN c.outcome = 'voicemail' THEN 1 ELSE 0 END) AS voicemail,
       sum(CASE WHEN c.outcome = 'error' THEN 1 ELSE 0 END) AS error,
       sum(CASE WHEN c.outcome = 'answered' THEN c.wait_seconds END) AS wait_answered_total,
       count(CASE WHEN c.outcome = 'answered' THEN c.wait_seconds END) AS wait_answered_count{extra}
  FROM calls c
  JOIN bounds b ON b.code = c.departement_code
 WHERE NOT c.test AND c.started_at >= b.lo AND c.started_at < b.hi"""

_UNATTRIBUTED = """,
       (SELECT count(*) FROM calls u
         WHERE u.departement_code IS NULL AND NOT u.test
           AND u.started_at >= :paris_lo AND u.started_at < :paris_hi) AS unattributed"""


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, datetime.min.time(), ZoneInfo(zone)).astimezone(UTC)


def _bounds(data: Dataset, codes, start: date, end: date) -> tuple[str, dict, dict]:
    """A `bounds(code, lo, hi)` CTE: each département's local period as a UTC range."""
    from core.db import UTCDateTime
    rows, params, types = [], {}, {}
    for i, code in enumerate(sorted(codes if codes is not None else data.zones)):
        zone = data.zones[code]
        params.update({f"c{i}": code, f"lo{i}": _midnight(start, zone),
                       f"hi{i}": _midnight(end + timedelta(days=1), zone)})
        types.update({f"lo{i}": UTCDateTime(), f"hi{i}": UTCDateTime()})
        rows.append(f"(:c{i}, :lo{i}, :hi{i})")
    return (f"WITH bounds(code, lo, hi) AS (VALUES {', '.join(rows)})", params, types)


def _period_sql(data: Dataset, codes, start: date, end: date) -> tuple[str, dict, dict]:
    """The rows of the local dates [start, end] of each département, as written by hand: the
    UTC range that covers every timezone of the scope (the index walks it), then, when the
    scope spans several timezones, each timezone's own range."""
    from core.db import UTCDateTime
    zones: dict[str, list[str]] = {}
    for code in sorted(codes if codes is not None else data.zones):
        zones.setdefault(data.zones[code], []).append(code)
    params = {}
    for i, tz in enumerate(zones):
        params.update({f"lo{i}": _midnight(start, tz), f"hi{i}": _midnight(end + timedelta(days=1),
                                                                           tz)})
    ranges = dict(params)
    params = {"lo": min(v for k, v in ranges.items() if k.startswith("lo")),
              "hi": max(v for k, v in ranges.items() if k.startswith("hi"))}
    sql = "s.occurred_at >= :lo AND s.occurred_at < :hi"
    if len(zones) > 1:
        params.update(ranges)
        biggest = max(zones, key=lambda tz: len(zones[tz]))
        whens = [f"WHEN s.departement_code IN ({', '.join(repr(c) for c in group)}) "
                 f"THEN s.occurred_at >= :lo{i} AND s.occurred_at < :hi{i}"
                 for i, (tz, group) in enumerate(zones.items()) if tz != biggest]
        i = list(zones).index(biggest)
        sql += (f"\n   AND CASE {' '.join(whens)} "
                f"ELSE s.occurred_at >= :lo{i} AND s.occurred_at < :hi{i} END")
    return sql, params, {k: UTCDateTime() for k in params}


@dataclass(frozen=True)
class Listing:
    """« Mes appels » as one user with some filters (query string names)."""

    key: str
    title: str
    user: str
    du: date | None = None
    au: date | None = None
    issue: str | None = None  # Outcome name
    thematique: str | None = None  # key
    a_qualifier: bool = False
    canal: str | None = None  # Channel name
    deep: bool = False


LISTINGS = (
    Listing("calls-ref1", "referent of 93, no filter", "ref1"),
    Listing("calls-ref2", "referent of 59 + 62, Sep–Nov, outcome « personne n'a répondu »",
            "ref2", du=date(2026, 9, 1), au=date(2026, 11, 30), issue="no_answer"),
    Listing("calls-ref1-qualify", "referent of 93, 2026, to qualify, channel SVI", "ref1",
            du=date(2026, 1, 1), au=date(2026, 12, 31), a_qualifier=True, canal="phone_svi"),
    Listing("calls-national-them", f"national, {QUARTER}, thématique « Réglementation »",
            "national", du=date(2026, 7, 1), au=date(2026, 9, 30), thematique="reglementaire"),
    Listing("calls-national-issue", "national, outcome « erreur technique »", "national",
            issue="error"),
    Listing("calls-national-email", "national, Jan–Jun 2026, channel email, to qualify",
            "national", du=date(2026, 1, 1), au=date(2026, 6, 30), canal="email",
            a_qualifier=True),
    Listing("calls-deep", "national, no filter, deep page (keyset)", "national", deep=True),
)


def _listing_page(data: Dataset, v: Listing) -> Page:
    from core.db import UTCDateTime
    from tracking.listing import encode_cursor
    codes = USERS[v.user].codes or None
    query: dict[str, str] = {}
    conditions, params, types = [], {}, {}
    if codes is not None:
        conditions.append("s.departement_code IN ("
                          + ", ".join(f"'{c}'" for c in codes) + ")")
    if v.du is not None:
        query.update(du=v.du.isoformat(), au=v.au.isoformat())
        period, params, types = _period_sql(data, codes, v.du, v.au)
        conditions.append(period)
    if v.issue:
        query["issue"] = v.issue
        conditions.append(f"c.outcome = '{v.issue}'")
    if v.thematique:
        query["thematique"] = v.thematique
        conditions.append(f"t.key = '{v.thematique}'")
    if v.canal:
        query["canal"] = v.canal
        conditions.append(f"s.channel = '{v.canal}'")
    if v.a_qualifier:
        query["a_qualifier"] = "y"
        conditions.append("s.motif_id IS NULL")
    title = f"« Mes appels », {v.title}"
    if v.deep and data.deep_cursor is not None:
        at, row_id = data.deep_cursor
        query["apres"] = encode_cursor(at, row_id)
        conditions.append("s.occurred_at <= :at AND (s.occurred_at < :at OR s.id < :id)")
        params.update(at=at, id=row_id)
        types["at"] = UTCDateTime()
        title += f", {data.counts.get('rows above the deep page', 0):,} rows down"
    where = ("\n WHERE " + "\n   AND ".join(conditions)) if conditions else ""
    return Page(v.key, title, v.user, "/appels/?" + urlencode(query), "Mes appels",
                _LIST_SQL.format(where=where), params, _check_listing(data), types,
                target=TARGET_CALLS_MS)


def _check_listing(data: Dataset) -> Callable[[str, list], list[str]]:
    def check(html: str, rows) -> list[str]:
        """The page shows the SQL's first 50 rows, in order, with their local time, département
        and outcome, offers the next page when the SQL has a 51st row, and shows no error."""
        page = Html(html)
        shown = [(c[8], c[1], c[0], c[4]) for c in page.rows if len(c) == 9]
        wanted = [(r[0], r[2], _utc(r[1]).astimezone(ZoneInfo(data.zones[r[2]]))
                   .strftime("%d/%m/%Y %H:%M"), _outcome_label(r[5])) for r in rows[:50]]
        problems = []
        if not wanted:
            problems.append("the SQL found no row: the page measures nothing")
        if shown != wanted:
            diff = next((f"first difference at row {i + 1}: page {a}, SQL {b}"
                         for i, (a, b) in enumerate(zip(shown, wanted)) if a != b), "")
            problems.append(f"{len(shown)} rows shown, {len(wanted)} from the SQL, or not the "
                            f"same {diff}")
        if ("Page suivante" in html) != (len(rows) > 50):
            problems.append("the link to the next page does not match the SQL")
        if "Le formulaire contient" in html:
            problems.append("the page shows a form error (a filter was refused)")
        return problems
    return check


def _utc(value) -> datetime:
    """A timestamp as a statement returns it (SQLite: text, UTC) as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _outcome_label(name: str | None) -> str:
    from tracking.models import Outcome
    return Outcome[name].value if name else "—"


def _dashboard_page(data: Dataset, key: str, user: str, code: str | None) -> Page:
    from core.db import UTCDateTime
    from tracking.exports import quarter_bounds
    start, end = quarter_bounds(QUARTER)
    bounds, params, types = _bounds(data, [code] if code else None, start, end)
    extra = ""
    if code is None:
        extra = _UNATTRIBUTED
        params.update(paris_lo=_midnight(start, "Europe/Paris"),
                      paris_hi=_midnight(end + timedelta(days=1), "Europe/Paris"))
        types.update(paris_lo=UTCDateTime(), paris_hi=UTCDateTime())
    url = f"/tableau-de-bord/{code or ''}?" + urlencode({"trimestre": QUARTER})
    title = (f"Dashboard of {code}" if code else "National dashboard") + f", {QUARTER}"
    return Page(key, title, user, url,
                f"Tableau de bord — {code}" if code else "Tableau de bord national",
                _FIGURES_SQL.format(bounds=bounds, extra=extra), params, _check_dashboard(code),
                types, target=None if code else TARGET_DASHBOARD_MS)


_KPI = re.compile(r'id="kpi-([a-z-]+)"[^>]*>([^<]*)<')


def _check_dashboard(code: str | None) -> Callable[[str, list], list[str]]:
    def check(html: str, rows) -> list[str]:
        """The page's key figures are the SQL's, formatted as the page formats them; the
        national page compares the 101 départements."""
        from web.dashboard_pages import kpi_int, kpi_percent, kpi_seconds
        if len(rows) != 1:
            return [f"the SQL returned {len(rows)} rows"]
        r = rows[0]._mapping
        received, answered = r["received"], r["answered"] or 0
        base = received - (r["out_of_hours"] or 0) - (r["no_phone"] or 0)
        wanted = {
            "recus": kpi_int(received), "decroches": kpi_int(answered),
            "taux": kpi_percent(answered / base if base > 0 else None),
            "attente": kpi_seconds(r["wait_answered_total"] / r["wait_answered_count"]
                                   if r["wait_answered_count"] else None),
            "hors-horaires": kpi_int(r["out_of_hours"]),
            "sans-assistance": kpi_int(r["no_phone"]), "abandons": kpi_int(r["abandoned"]),
            "sans-reponse": kpi_int(r["no_answer"]), "sonnerie": kpi_int(r["hung_up"]),
            "messages": kpi_int(r["voicemail"]), "erreurs": kpi_int(r["error"])}
        if code is None and r["unattributed"]:
            wanted["sans-departement"] = kpi_int(r["unattributed"])
        shown = {k: v.strip() for k, v in _KPI.findall(html)}
        problems = [f"« {k} »: page {shown.get(k)!r}, SQL {v!r}" for k, v in wanted.items()
                    if shown.get(k) != v]
        if not received:
            problems.append("the SQL counted no call: the page measures nothing")
        if code is None:
            table = re.search(r'<table id="comparaison-table">.*?</table>', html, re.S)
            lines = Html(table.group(0)).rows if table else []
            total = sum(int(re.sub(r"\D", "", cells[1]) or 0) for cells in lines)
            if len(lines) != 101 or total != received:
                problems.append(f"the comparison shows {len(lines)} départements and {total} "
                                f"calls, the SQL {received}")
        return problems
    return check


PAGE_KEYS = [v.key for v in LISTINGS] + ["dashboard", "dashboard-59"]


def pages(data: Dataset) -> list[Page]:
    """Every page measured, with its floor."""
    return ([_listing_page(data, v) for v in LISTINGS]
            + [_dashboard_page(data, "dashboard", "national", None),
               _dashboard_page(data, "dashboard-59", "ref2", "59")])


# --- measuring -----------------------------------------------------------------------------

def measure(app, data: Dataset, requests: int, warmup: int = 2,
            only: set[str] | None = None) -> dict[str, Timings]:
    """Time each page as its user, and its floor (`harness.measure`)."""
    return harness.measure(app, pages(data), clients(app), requests, warmup, only)


def explain(app, data: Dataset, key: str, out=sys.stdout) -> None:
    """The plans of the statements a page runs, as the database explains them."""
    from sqlalchemy import event
    engine = app.extensions["svi.engine"]
    page = next(p for p in pages(data) if p.key == key)
    client = clients(app)[page.user]
    seen = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        client.get(page.url)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    prefix = "EXPLAIN ANALYZE " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        for statement, parameters in seen:
            t = time.perf_counter()
            conn.exec_driver_sql(statement, parameters).all()
            ms = (time.perf_counter() - t) * 1000
            plan = conn.exec_driver_sql(prefix + statement, parameters).all()
            print(f"--- {ms:.1f} ms\n{statement}\n" + "\n".join(" | ".join(map(str, row))
                                                         for row in plan) + "\n", file=out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are the reference run."""
    p = argparse.ArgumentParser(prog="python -m bench.tracking",
                                description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200,
                   help="timed requests of each « Mes appels » page (and as many SQL runs)")
    p.add_argument("--dashboard-requests", type=int, default=40,
                   help="timed requests of each dashboard")
    p.add_argument("--warmup", type=int, default=2, help="untimed requests of each page first")
    p.add_argument("--calls", type=int, default=Sizes.calls)
    p.add_argument("--solicitations", type=int, default=Sizes.solicitations)
    p.add_argument("--deep", type=int, default=Sizes.deep,
                   help="rows above the deep page of « Mes appels »")
    harness.add_run_options(p, PAGE_KEYS)
    p.add_argument("--database-url", metavar="URL",
                   help="measure this database, already built by the benchmark (no build)")
    p.add_argument("--keep", metavar="DIR",
                   help="build the SQLite database in DIR and keep it (reused when present)")
    p.add_argument("--explain", choices=PAGE_KEYS,
                   help="instead of measuring, print the plans of this page's statements")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build each database, measure, print the Markdown report, write
    bench/results/tracking.md; the exit status of `harness.Run.finish`."""
    args = parse_args(argv)
    sizes = Sizes(calls=args.calls, solicitations=args.solicitations, deep=args.deep)
    backends = harness.backends(args)
    if args.database_url:
        backends = ["postgresql" if args.database_url.startswith("postgresql") else "sqlite"]
    run = harness.Run("« Mes appels » and the national dashboard", RESULTS)
    for backend in backends:
        with run.backend(backend) as (tmp, url):
            kept = Path(args.keep) / "tracking.sqlite3" if args.keep and backend == "sqlite" \
                else None
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                url = f"sqlite:///{kept}"
            if args.database_url:
                url = args.database_url
            if args.database_url or (kept is not None and kept.exists()):
                print(f"{backend}: reusing {url}", flush=True)
                data = describe(url, sizes)
            else:
                print(f"{backend}: building {sizes.calls:,} calls and "
                      f"{sizes.solicitations:,} solicitations…", flush=True)
                data = build(url, sizes, progress=lambda s: print(s, flush=True))
            with harness.serve(data, tmp) as app:
                run.built(backend, data)
                if args.profile:
                    page = next(p for p in pages(data) if p.key == args.profile)
                    harness.profile(page, clients(app), args.requests)
                elif args.explain:
                    explain(app, data, args.explain)
                else:
                    print(f"{backend}: measuring…", flush=True)
                    listing = measure(app, data, args.requests, args.warmup,
                                      {v.key for v in LISTINGS})
                    dashboards = measure(app, data, args.dashboard_requests, args.warmup,
                                         {"dashboard", "dashboard-59"})
                    run.measured(backend, pages(data), {**listing, **dashboards})
    if args.profile or args.explain:
        return 0
    return run.finish(
        [f"{sizes.calls:,} calls and {sizes.solicitations:,} solicitations from "
         f"{FIRST_DAY.isoformat()} to {DEFAULT_AT.date().isoformat()}, spread over the 101 "
         "départements (big ones get more), bulk-inserted as the app writes them (SQLite: "
         "executemany in one transaction, no ANALYZE, as in production; PostgreSQL: COPY then "
         "VACUUM ANALYZE, what autovacuum does).",
         f"Pages requested in-process (Flask test client, each user logged in through the "
         f"login form), the clock stopped at {DEFAULT_AT.isoformat()}; the SQL floor is one "
         "hand-written statement per page returning the same rows (« Mes appels ») or the "
         "key figures (dashboard: received, answered, answer rate, wait, outcomes, calls that "
         "reached no département), run on a connection of the app's engine, interleaved with "
         "the page requests. p95 is nearest-rank. Full GCs: Python's full garbage collections "
         "that ran during the page's timed requests."],
        agreed="every page answered 200 with its expected text and no form error; on the first "
               "round each « Mes appels » page showed the SQL's 50 rows in order (reference, "
               "département, local time, outcome) and its next-page link, and each dashboard "
               "the SQL's key figures (and, nationally, 101 départements adding up to them).",
        targets=f"« Mes appels » p95 < {TARGET_CALLS_MS:.0f} ms, national dashboard p95 < "
                f"{TARGET_DASHBOARD_MS:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
