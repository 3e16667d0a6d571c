"""`python -m bench.web`: the admin's web pages, side by side with their data read by hand.

One database per backend (SQLite, then a throwaway PostgreSQL cluster) is migrated and filled
through the real operations: 101 départements, 400 lines (`set_lines`), 5,000 exceptional
closures and a 100,000-row audit log (bulk inserts of the rows the app writes), and an admin who
logs in through the real login form. Each page is then requested in-process with Flask's test
client (no network), and, interleaved with it, one hand-written SQL statement that reads the
same data is run on a connection of the same engine: the floor, what the page's data costs at
the database. Every answer is checked (status 200, expected text; on the first round the
figures the page shows are compared with what the SQL returns), so an error page cannot be
measured by mistake.

Pages: the directory overview, a département's edit page (the one with the most closures),
the audit log's first page and a deep page (keyset cursor 90,000 rows down).

This module owns the data set, the pages and their checks; timing and report: bench/harness.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from bench import harness
from bench.harness import Html, Page, Timings

RESULTS = Path(__file__).with_name("results") / "web.md"
#: The issue's target, for the directory pages; the audit log pages are measured, not judged.
TARGET_P95_MS = 150.0
#: The report's table (`harness.table`): its one target named in the header, ratios in units.
TABLE_STYLE = {"header_target": TARGET_P95_MS, "ratio_digits": 0}
ADMIN_EMAIL = "admin.bench@example.gouv.fr"
ADMIN_PASSWORD = "un mot de passe de banc d'essai"
#: The instant the pages are asked about: Friday 13 March 2026, 17:00 in Paris. Every
#: metropolitan département is closed (its next opening is computed), overseas ones are open or
#: closed depending on their hours; closures around that date close some of them all day.
DEFAULT_AT = datetime(2026, 3, 13, 16, 0, tzinfo=UTC)
REASONS = ("formation de l'équipe", "inventaire", "déménagement du service", "pont",
           "réunion nationale", "panne du standard", "grève", "séminaire")
FIELDS = ("Lignes", "Horaires", "Fermetures exceptionnelles", "Messagerie vocale",
          "Durée de sonnerie (s)", "Courriel")


@dataclass(frozen=True)
class Sizes:
    """How much data the database holds (the issue's figures by default)."""

    lines: int = 400
    closures: int = 5_000
    audit: int = 100_000
    #: How far down the audit log (in rows, newest first) the deep page starts.
    deep: int = 90_000


@dataclass
class Dataset:
    """What the builder made, as the pages and the SQL statements need it."""

    url: str
    at: datetime
    edit_code: str
    deep_cursor: tuple[datetime, int]
    counts: dict[str, int] = field(default_factory=dict)
    built_seconds: float = 0.0


# --- the data ------------------------------------------------------------------------------

def line_number(region: str, index: int, k: int) -> str:
    """A valid fixed-line number of `region`, distinct for each (index, k)."""
    import phonenumbers
    if region == "FR":  # ARCEP's range reserved for fiction: 01 99 00 xx xx rings nobody
        return f"01 99 {index // 100:02d} {index % 100:02d} {k:02d}"
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.FIXED_LINE)
    nsn = phonenumbers.national_significant_number(example)
    return "0" + nsn[:-4] + f"{index % 100:02d}{k:02d}"


def spread(total: int, buckets: int, most: int) -> list[int]:
    """`total` split as evenly as possible over `buckets`, none above `most`."""
    if total > buckets * most:
        raise ValueError(f"{total} items cannot fit {buckets} buckets of at most {most}")
    return [total // buckets + (1 if i < total % buckets else 0) for i in range(buckets)]


def build(url: str, sizes: Sizes = Sizes(), at: datetime = DEFAULT_AT,
          rng: random.Random | None = None) -> Dataset:
    """Migrate a fresh database and fill it: départements, lines, closures, audit log, admin.

    Départements and lines go through the real operations (`seed_departements`, `set_lines`)
    and the admin through `accounts.operations.create`; closures and audit rows, too many for
    that, are bulk-inserted as the same rows `add_exception` and `audit.operations.record` write.
    """
    from sqlalchemy import func, insert, select
    from sqlalchemy.orm import Session

    from accounts import operations as accounts
    from accounts.models import Role
    from audit.models import AuditEntry
    from audit.operations import Actor
    from core.cli import upgrade
    from core.db import make_engine
    from directory.limits import MAX_LINES
    from directory.models import DateException, Departement, ExceptionKind, Line
    from directory.operations import seed_departements, set_lines
    from directory.reference import official_order

    rng = rng or random.Random(20260313)
    started = time.perf_counter()
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as db:
            seed_departements(db)
            depts = official_order(db.scalars(select(Departement)).all(), lambda d: d.code)
            codes = [d.code for d in depts]
            for i, (dept, count) in enumerate(zip(depts, spread(sizes.lines, len(depts),
                                                                MAX_LINES))):
                set_lines(db, dept, [(line_number(dept.phone_region, i, k), f"Référent {k + 1}")
                                     for k in range(count)])
            accounts.create(db, Actor.cli(), email=ADMIN_EMAIL, role=Role.admin,
                            password=ADMIN_PASSWORD)
            db.commit()
        today = at.date()
        closures, seen = [], set()
        while len(closures) < sizes.closures:
            code = rng.choice(codes)
            start = today + timedelta(days=rng.randint(-365, 365))
            end = start + timedelta(days=rng.choice((0, 0, 0, 1, 2, 4)))
            if (code, start) in seen:
                continue
            seen.add((code, start))
            closures.append({"departement_code": code, "kind": ExceptionKind.closure,
                             "start_date": start, "end_date": end, "start_time": None,
                             "end_time": None, "reason": rng.choice(REASONS)})
        with Session(engine) as db:  # the admin's creation is audited: the log has one row
            missing = max(sizes.audit - db.scalar(select(func.count()).select_from(AuditEntry)), 0)
        actors = ([f"utilisateur:admin{n}@example.gouv.fr" for n in range(1, 6)]
                  + ["cli:exploitation", "import:annuaire-2026.xlsx (cli:exploitation)"])
        first = at - timedelta(days=730)
        step = timedelta(days=730) / max(missing, 1)
        audit = []
        for n in range(missing):
            names = rng.sample(FIELDS, rng.randint(1, 3))
            audit.append({
                "at": first + step * n + timedelta(microseconds=rng.randrange(1000)),
                "actor": rng.choice(actors), "actor_user_id": None,
                "departement_code": rng.choice(codes), "entity": "département",
                "summary": f"annuaire modifié : {', '.join(names)}",
                "changes": {name: [f"avant {n}", f"après {n}"] for name in names}, "seq": 0})
        with engine.begin() as conn:
            for rows, model in ((closures, DateException), (audit, AuditEntry)):
                for i in range(0, len(rows), 10_000):
                    conn.execute(insert(model), rows[i:i + 10_000])
        with Session(engine) as db:
            per_dept = dict(db.execute(select(DateException.departement_code, func.count())
                                       .group_by(DateException.departement_code)).all())
            edit_code = max(codes, key=lambda c: (per_dept.get(c, 0), c))
            depth = min(sizes.deep, max(sizes.audit - 60, 0))
            cursor = db.execute(select(AuditEntry.at, AuditEntry.id)
                                .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                                .offset(depth).limit(1)).one()
            counts = {
                "départements": db.scalar(select(func.count()).select_from(Departement)),
                "lines": db.scalar(select(func.count()).select_from(Line)),
                "closures": db.scalar(select(func.count()).select_from(DateException)),
                "audit rows": db.scalar(select(func.count()).select_from(AuditEntry)),
                "closures of the edited département": per_dept.get(edit_code, 0),
                "audit rows above the deep page": depth,
            }
    finally:
        engine.dispose()
    return Dataset(url=url, at=at, edit_code=edit_code, deep_cursor=(cursor[0], cursor[1]),
                   counts=counts, built_seconds=time.perf_counter() - started)


def clients(app) -> dict:
    """The admin's test client, logged in through the real login form."""
    return {"admin": harness.login(app.test_client(), ADMIN_EMAIL, ADMIN_PASSWORD)}


# --- the pages and their floors ------------------------------------------------------------

#: Per dialect: JSON array aggregate and constructor, and the cast that keeps results as text
#: (psycopg would otherwise parse the JSON: client work, not the database's).
_JSON = {"sqlite": ("json_group_array", "json_array", ""),
         "postgresql": ("json_agg", "json_build_array", "::text")}

_DIRECTORY_SQL = """
SELECT d.code, d.name, d.timezone, d.holiday_subdiv, d.phone_assistance, d.ring_strategy,
       d.ring_timeout, d.voicemail_enabled, d.form_url, d.email, d.version,
       (SELECT {agg}({arr}(l.position, l.number, l.label)){text} FROM lines l
         WHERE l.departement_code = d.code AND l.active) AS lines,
       (SELECT {agg}({arr}(s.weekday, s.start, s."end")){text} FROM opening_slots s
         WHERE s.departement_code = d.code) AS slots,
       (SELECT {agg}({arr}(e.kind, e.start_date, e.end_date, e.start_time, e.end_time,
                           e.reason)){text} FROM date_exceptions e
         WHERE e.departement_code = d.code) AS exceptions,
       (SELECT {agg}({arr}(w.holiday_name, w.departement_code, w.worked)){text}
          FROM worked_holidays w
         WHERE w.departement_code IS NULL OR w.departement_code = d.code) AS worked
  FROM departements d"""

_AUDIT_SQL = """
SELECT id, at, actor, departement_code, entity, summary, changes
  FROM audit_log{where}
 ORDER BY at DESC, id DESC
 LIMIT 51"""


#: The keyset condition as one would write it by hand: the same rows as the page's
#: `at < :at OR (at = :at AND id < :id)`, plus an explicit upper bound on `at`, which lets both
#: databases start the index scan at the cursor instead of at the newest row.
DEEP_WHERE = "\n WHERE at <= :at AND (at < :at OR id < :id)"


def _json_list(value) -> list:
    return json.loads(value) if value else []


def _check_overview(html: str, rows) -> list[str]:
    """The overview shows every département of the SQL, each with its number of lines."""
    page = Html(html)
    shown = {cells[0]: int(cells[4]) for cells in page.rows if len(cells) == 6}
    wanted = {r.code: len(_json_list(r.lines)) for r in rows}
    problems = []
    if f"Départements : {len(wanted)} sur {len(wanted)}" not in html:
        problems.append("the caption does not count every département")
    if shown != wanted:
        problems.append(f"départements or line counts differ: page {len(shown)} rows, "
                        f"{sum(shown.values())} lines; SQL {len(wanted)} rows, "
                        f"{sum(wanted.values())} lines")
    return problems


def _check_edit(html: str, rows) -> list[str]:
    """The edit page shows the département's lines and every exception not over yet (past ones
    are kept without being shown)."""
    page = Html(html)
    if len(rows) != 1:
        return [f"the SQL returned {len(rows)} départements"]
    row = rows[0]
    numbers = [i.get("value", "") for i in page.inputs
               if i.get("name", "").startswith("lines-") and i["name"].endswith("-number")]
    periods = [i for i in page.inputs
               if i.get("name", "").startswith("exceptions-") and i["name"].endswith("-kind")]
    version = [i.get("value") for i in page.inputs if i.get("name") == "version"]
    problems = []
    if len([n for n in numbers if n]) != len(_json_list(row.lines)):
        problems.append(f"{len([n for n in numbers if n])} lines shown, "
                        f"{len(_json_list(row.lines))} in the SQL")
    today = DEFAULT_AT.astimezone(ZoneInfo(row.timezone)).date().isoformat()
    current = [e for e in _json_list(row.exceptions) if str(e[2])[:10] >= today]
    if len(periods) != len(current):
        problems.append(f"{len(periods)} periods shown, {len(current)} not over in the SQL")
    if version != [str(row.version)]:
        problems.append(f"version {version} shown, {row.version} in the SQL")
    return problems


def _check_audit(html: str, rows) -> list[str]:
    """The audit page shows the SQL's first 50 rows, in order, and offers older ones."""
    page = Html(html)
    shown = [(cells[1], cells[2]) for cells in page.rows if len(cells) == 4]
    wanted = [(r.actor, r.departement_code or "—") for r in rows[:50]]
    problems = []
    if shown != wanted:
        problems.append(f"{len(shown)} entries shown, {len(wanted)} from the SQL, or not the same")
    if ("Plus anciennes" in html) != (len(rows) > 50):
        problems.append("the link to older entries does not match the SQL")
    return problems


def pages(data: Dataset, dialect: str) -> list[Page]:
    """The four pages, with their floors written for `dialect`."""
    from core.db import UTCDateTime
    agg, arr, text = _JSON[dialect]
    directory = _DIRECTORY_SQL.format(agg=agg, arr=arr, text=text)
    at, entry_id = data.deep_cursor
    return [
        Page("overview", "Directory overview (101 départements now)", "admin", "/annuaire/",
             "Départements : 101 sur 101", directory, {}, _check_overview,
             target=TARGET_P95_MS),
        Page("edit", f"Edit page of {data.edit_code} "
                     f"({data.counts.get('closures of the edited département', 0)} closures)",
             "admin", f"/annuaire/{data.edit_code}/modifier", "Périodes en cours et à venir",
             directory + "\n WHERE d.code = :code", {"code": data.edit_code}, _check_edit,
             target=TARGET_P95_MS),
        Page("audit", f"Audit log, first page (50 of {data.counts.get('audit rows', 0):,})",
             "admin", "/admin/journal",
             "Journal des modifications", _AUDIT_SQL.format(where=""), {}, _check_audit),
        Page("audit-deep", f"Audit log, deep page "
                           f"({data.counts.get('audit rows above the deep page', 0):,} rows "
                           "down, keyset)",
             "admin", "/admin/journal?" + urlencode({"avant": f"{at.isoformat()}|{entry_id}"}),
             "Plus récentes",
             _AUDIT_SQL.format(where=DEEP_WHERE),
             {"at": at, "id": entry_id}, _check_audit, {"at": UTCDateTime()}),
    ]


# --- measuring -----------------------------------------------------------------------------

def measure(app, data: Dataset, requests: int, warmup: int = 3,
            only: set[str] | None = None) -> dict[str, Timings]:
    """Log in, then time each page and its floor (`harness.measure`)."""
    return harness.measure(app, pages(data, app.extensions["svi.engine"].dialect.name),
                           clients(app), requests, warmup, only)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are the reference run (about 2 minutes)."""
    p = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300,
                   help="timed requests of the directory pages (and as many SQL runs)")
    p.add_argument("--audit-requests", type=int, default=150,
                   help="timed requests of each audit log page")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests of each page first")
    p.add_argument("--lines", type=int, default=Sizes.lines)
    p.add_argument("--closures", type=int, default=Sizes.closures)
    p.add_argument("--audit", type=int, default=Sizes.audit, help="audit log rows")
    harness.add_run_options(p, ["overview", "edit", "audit", "audit-deep"])
    p.add_argument("--gc-freeze", action="store_true",
                   help="gc.freeze() once the app is loaded, as a server could after forking "
                        "its workers: full collections then skip the app's own objects")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build each database, measure, print the Markdown report, write bench/results/web.md;
    the exit status of `harness.Run.finish`."""
    args = parse_args(argv)
    sizes = Sizes(lines=args.lines, closures=args.closures, audit=args.audit,
                  deep=min(Sizes.deep, int(args.audit * 0.9)))
    run = harness.Run("the admin's web pages", RESULTS)
    for backend in harness.backends(args):
        with run.backend(backend) as (tmp, url):
            print(f"{backend}: building {sizes.lines} lines, {sizes.closures:,} closures, "
                  f"{sizes.audit:,} audit rows…", flush=True)
            data = build(url, sizes)
            with harness.serve(data, tmp) as app:
                if args.gc_freeze:
                    gc.collect()
                    gc.freeze()
                run.built(backend, data)
                todo = pages(data, app.extensions["svi.engine"].dialect.name)
                if args.profile:
                    page = next(p for p in todo if p.key == args.profile)
                    harness.profile(page, clients(app), args.requests)
                else:
                    print(f"{backend}: measuring…", flush=True)
                    directory = measure(app, data, args.requests, args.warmup,
                                        {"overview", "edit"})
                    audit = measure(app, data, args.audit_requests, args.warmup,
                                    {"audit", "audit-deep"})
                    run.measured(backend, todo, {**directory, **audit})
        if args.gc_freeze:
            gc.unfreeze()
    if args.profile:
        return 0
    return run.finish(
        [f"Pages requested in-process (Flask test client, logged in as an admin), at the "
         f"instant {DEFAULT_AT.isoformat()} (Friday 17:00 in Paris); the SQL floor is one "
         "hand-written statement per page returning the same data (JSON-aggregated per "
         "département for the directory pages), run on a connection of the app's engine, "
         "interleaved with the page requests. p95 is nearest-rank. Full GCs: Python's full "
         "garbage collections that ran during the page's timed requests (each a pause of "
         "tens of ms here)" + (", after gc.freeze() (--gc-freeze)." if args.gc_freeze else ".")],
        agreed="every page answered 200 with its expected text; on the first round each page "
               "showed the same départements, lines, periods and audit entries as its SQL.",
        targets=f"directory pages p95 < {TARGET_P95_MS:.0f} ms",
        **TABLE_STYLE)


if __name__ == "__main__":
    sys.exit(main())
