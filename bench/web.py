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
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo
from urllib.parse import urlencode

RESULTS = Path(__file__).with_name("results") / "web.md"
TARGET_P95_MS = 150.0
#: Pages judged against the target (the issue's); the audit log pages are measured, not judged.
JUDGED = ("overview", "edit")
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


def make_app(data: Dataset, tmp: Path):
    """The real app on the dataset's database, its clock stopped at the dataset's instant."""
    from app import create_app
    return create_app({
        "DATABASE_URL": data.url, "SECRET_KEY": "bench-web-secret", "SVI_ENV": "development",
        "PUBLIC_BASE_URL": "", "LOG_LEVEL": "WARNING", "CLOCK": lambda: data.at,
        "JOURNAL_DIR": str(tmp / "journal"), "MAIL_OUTBOX_DIR": str(tmp / "outbox"),
        "WORKBOOK_STORAGE_DIR": str(tmp / "workbooks")})


class _Page(HTMLParser):
    """Cells of the first table's body rows and the attributes of every input of a page."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.inputs: list[dict[str, str]] = []
        self._tables = 0
        self._in_body = False
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append({k: v or "" for k, v in attrs})
        elif tag == "table":
            self._tables += 1
        elif tag == "tbody" and self._tables == 1:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def login(client) -> None:
    """Log the admin in through the real login form (CSRF token read from the page)."""
    import re
    page = client.get("/connexion").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("no CSRF token on the login page")
    answer = client.post("/connexion", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                              "csrf_token": token.group(1)})
    if answer.status_code != 302:
        raise RuntimeError(f"login refused ({answer.status_code})")


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
    page = _Page(html)
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
    page = _Page(html)
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
    page = _Page(html)
    shown = [(cells[1], cells[2]) for cells in page.rows if len(cells) == 4]
    wanted = [(r.actor, r.departement_code or "—") for r in rows[:50]]
    problems = []
    if shown != wanted:
        problems.append(f"{len(shown)} entries shown, {len(wanted)} from the SQL, or not the same")
    if ("Plus anciennes" in html) != (len(rows) > 50):
        problems.append("the link to older entries does not match the SQL")
    return problems


@dataclass
class Page:
    """One page under test and the hand-written statement that reads the same data."""

    key: str
    title: str
    url: str
    expected: str
    sql: str
    params: dict
    check: Callable[[str, list], list[str]]
    types: dict = field(default_factory=dict)


def pages(data: Dataset, dialect: str) -> list[Page]:
    """The four pages, with their floors written for `dialect`."""
    from core.db import UTCDateTime
    agg, arr, text = _JSON[dialect]
    directory = _DIRECTORY_SQL.format(agg=agg, arr=arr, text=text)
    at, entry_id = data.deep_cursor
    return [
        Page("overview", "Directory overview (101 départements now)", "/annuaire/",
             "Départements : 101 sur 101", directory, {}, _check_overview),
        Page("edit", f"Edit page of {data.edit_code} "
                     f"({data.counts.get('closures of the edited département', 0)} closures)",
             f"/annuaire/{data.edit_code}/modifier", "Périodes en cours et à venir",
             directory + "\n WHERE d.code = :code", {"code": data.edit_code}, _check_edit),
        Page("audit", f"Audit log, first page (50 of {data.counts.get('audit rows', 0):,})",
             "/admin/journal",
             "Journal des modifications", _AUDIT_SQL.format(where=""), {}, _check_audit),
        Page("audit-deep", f"Audit log, deep page "
                           f"({data.counts.get('audit rows above the deep page', 0):,} rows "
                           "down, keyset)",
             "/admin/journal?" + urlencode({"avant": f"{at.isoformat()}|{entry_id}"}),
             "Plus récentes",
             _AUDIT_SQL.format(where=DEEP_WHERE),
             {"at": at, "id": entry_id}, _check_audit, {"at": UTCDateTime()}),
    ]


# --- measuring -----------------------------------------------------------------------------

@dataclass
class Timings:
    """Milliseconds of each request of a page and of each run of its statement."""

    page: list[float] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Full (generation 2) garbage collections that ran during the timed page requests.
    full_gcs: int = 0


class _FullCollections:
    """Counts Python's full garbage collections (a pause of tens of ms with the app loaded)."""

    def __init__(self):
        self.count = 0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            self.count += 1

    def __enter__(self) -> "_FullCollections":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (`share` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def measure(app, data: Dataset, requests: int, warmup: int = 3,
            only: set[str] | None = None) -> dict[str, Timings]:
    """Log in, then request each page `requests` times, its statement as many times,
    interleaved (page then SQL on even rounds, SQL then page on odd ones). The first answer of
    each is checked against the other (`Page.check`), every answer for status and text."""
    from sqlalchemy import bindparam, text
    engine = app.extensions["svi.engine"]
    todo = [p for p in pages(data, engine.dialect.name) if only is None or p.key in only]
    statements = {p.key: text(p.sql).bindparams(*(bindparam(k, type_=t)
                                                  for k, t in p.types.items()))
                  for p in todo}
    results = {p.key: Timings() for p in todo}
    client = app.test_client()
    login(client)
    with engine.connect() as conn, _FullCollections() as collections:
        def run_sql(page: Page) -> tuple[float, list]:
            t = time.perf_counter()
            rows = conn.execute(statements[page.key], page.params).all()
            elapsed = (time.perf_counter() - t) * 1000
            conn.rollback()
            return elapsed, rows

        def run_page(page: Page) -> tuple[float, str]:
            before = collections.count
            t = time.perf_counter()
            answer = client.get(page.url)
            body = answer.get_data(as_text=True)
            elapsed = (time.perf_counter() - t) * 1000
            results[page.key].full_gcs += collections.count - before
            if answer.status_code != 200 or page.expected not in body:
                raise RuntimeError(f"{page.url} answered {answer.status_code} without "
                                   f"« {page.expected} »")
            return elapsed, body

        for page in todo:  # warm-up: templates compiled, caches filled; then the cross-check
            for _ in range(warmup):
                run_page(page)
                run_sql(page)
            results[page.key].problems = page.check(run_page(page)[1], run_sql(page)[1])
            results[page.key].full_gcs = 0
        for n in range(requests):
            for page in todo:
                r = results[page.key]
                if n % 2:
                    r.sql.append(run_sql(page)[0])
                    r.page.append(run_page(page)[0])
                else:
                    r.page.append(run_page(page)[0])
                    r.sql.append(run_sql(page)[0])
    return results


def profile(app, data: Dataset, key: str, requests: int, out=sys.stdout) -> None:
    """cProfile `requests` requests of one page; print the 30 costliest functions."""
    page = next(p for p in pages(data, app.extensions["svi.engine"].dialect.name)
                if p.key == key)
    client = app.test_client()
    login(client)
    client.get(page.url)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.get(page.url)
    profiler.disable()
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(30)
    print(buffer.getvalue(), file=out)


@contextmanager
def database(backend: str, tmp: Path):
    """A fresh, empty database URL for `backend` ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench-web.sqlite3'}"
    else:
        from bench.servers import postgres
        with postgres() as (url, _pid):
            yield url


# --- report --------------------------------------------------------------------------------

def table(results: dict[str, dict[str, Timings]], titles: dict[str, str]) -> tuple[str, bool]:
    """The Markdown table of every backend's pages, and whether every judged page passed."""
    lines = ["| Database | Page | Requests | Page p50 / p95 / max (ms) | "
             "SQL p50 / p95 / max (ms) | p95 page/SQL | Full GCs | Target p95 < 150 ms |",
             "|:---|:---|---:|---:|---:|---:|---:|:---|"]
    passed = True
    for backend, pages_ in results.items():
        for key, t in pages_.items():
            p = [percentile(t.page, s) for s in (0.5, 0.95)] + [max(t.page)]
            q = [percentile(t.sql, s) for s in (0.5, 0.95)] + [max(t.sql)]
            if key in JUDGED:
                ok = p[1] < TARGET_P95_MS and not t.problems
                passed &= ok
                verdict = "PASS" if ok else "FAIL"
            else:
                verdict = "(measured)" if not t.problems else "FAIL (check)"
                passed &= not t.problems
            lines.append(f"| {backend} | {titles[key]} | {len(t.page)} | "
                         f"{p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | "
                         f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} | {p[1] / q[1]:.0f}× | "
                         f"{t.full_gcs} | {verdict} |")
    return "\n".join(lines), passed


def software() -> str:
    """Versions of what the pages run on."""
    import sqlite3
    from importlib.metadata import version

    from bench.report import _postgres_version
    return (f"Flask {version('flask')}, Jinja2 {version('jinja2')}, WTForms {version('wtforms')}, "
            f"SQLAlchemy {version('sqlalchemy')}, psycopg {version('psycopg')}, "
            f"SQLite {sqlite3.sqlite_version}, PostgreSQL {_postgres_version()}")


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
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument("--gc-freeze", action="store_true",
                   help="gc.freeze() once the app is loaded, as a server could after forking "
                        "its workers: full collections then skip the app's own objects")
    p.add_argument("--profile", choices=("overview", "edit", "audit", "audit-deep"),
                   help="instead of measuring, profile this page (cProfile) and print the top")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build each database, measure, print the Markdown report, write bench/results/web.md.

    Exit status: 0 when every judged page is under its target and every check agrees, 1
    otherwise, 2 when a database could not be measured."""
    import logging

    from bench import report
    args = parse_args(argv)
    sizes = Sizes(lines=args.lines, closures=args.closures, audit=args.audit,
                  deep=min(Sizes.deep, int(args.audit * 0.9)))
    backends = [b for b, skip in (("sqlite", args.no_sqlite), ("postgresql", args.no_postgres))
                if not skip]
    started, machine = time.monotonic(), report.machine()
    machine["Software"] = software()
    results: dict[str, dict[str, Timings]] = {}
    titles, setups, failures = {}, [], []
    for backend in backends:
        tmp = Path(tempfile.mkdtemp(prefix="svi-bench-web-"))
        try:
            with database(backend, tmp) as url:
                print(f"{backend}: building {sizes.lines} lines, {sizes.closures:,} closures, "
                      f"{sizes.audit:,} audit rows…", flush=True)
                data = build(url, sizes)
                app = make_app(data, tmp)
                logging.getLogger().setLevel(logging.WARNING)
                if args.gc_freeze:
                    gc.collect()
                    gc.freeze()
                setups.append(f"{backend}: built in {data.built_seconds:.0f} s: " + ", ".join(
                    f"{v:,} {k}" for k, v in data.counts.items()))
                if args.profile:
                    profile(app, data, args.profile, args.requests)
                    continue
                print(f"{backend}: measuring…", flush=True)
                directory = measure(app, data, args.requests, args.warmup, {"overview", "edit"})
                audit = measure(app, data, args.audit_requests, args.warmup,
                                {"audit", "audit-deep"})
                results[backend] = {**directory, **audit}
                titles.update({p.key: p.title for p in pages(data, "sqlite")})
                from core import db as core_db
                core_db.dispose(app)
        except Exception as exc:  # report it with the other figures, go on
            failures.append(f"{backend}: not measured: {exc}")
            print(f"  failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            if args.gc_freeze:
                gc.unfreeze()
            shutil.rmtree(tmp, ignore_errors=True)
    if args.profile:
        return 0
    text, passed = table(results, titles) if results else ("(no results)", False)
    checks = [f"{b}, {titles[k]}: {p}" for b, r in results.items() for k, t in r.items()
              for p in t.problems]
    status = 2 if failures else (0 if passed else 1)
    verdict = {0: "PASS", 1: "FAIL", 2: "DOUBTFUL (a database was not measured)"}[status]
    md = "\n".join([
        "# SVI benchmark: the admin's web pages", "", "## Machine", "",
        *(f"- **{k}**: {v}" for k, v in machine.items()), "", "## Set-up", "",
        f"- Pages requested in-process (Flask test client, logged in as an admin), at the "
        f"instant {DEFAULT_AT.isoformat()} (Friday 17:00 in Paris); the SQL floor is one "
        "hand-written statement per page returning the same data (JSON-aggregated per "
        "département for the directory pages), run on a connection of the app's engine, "
        "interleaved with the page requests. p95 is nearest-rank. Full GCs: Python's full "
        "garbage collections that ran during the page's timed requests (each a pause of "
        "tens of ms here)" + (", after gc.freeze() (--gc-freeze)." if args.gc_freeze else "."),
        *(f"- {s}" for s in setups), "", "## Results", "", text, "",
        "## Checks", "",
        *(f"- {c}" for c in checks + failures or
          ["every page answered 200 with its expected text; on the first round each page "
           "showed the same départements, lines, periods and audit entries as its SQL."]), "",
        f"**Verdict: {verdict}** (directory pages p95 < {TARGET_P95_MS:.0f} ms; "
        f"benchmark took {time.monotonic() - started:.0f} s)", ""])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(md)
    print("\n" + md + f"\nWritten to {RESULTS}")
    return status


if __name__ == "__main__":
    sys.exit(main())
