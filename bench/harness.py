"""What the page benchmarks share (`bench.web`, `bench.tracking`): how they measure and report,
so that each of them keeps only its data set, its pages and their checks, and its options.

- `serve`: the real app on a benchmark's database, its clock stopped at the data set's instant;
  `login`: a test client logged in through the real login form; `Html`: a page's table cells
  and inputs, for the checks.
- `Page`: one page under test, the hand-written SQL statement that reads the same data (its
  floor), the check comparing both and the page's p95 target.
- `measure`: each page requested in-process, interleaved with its floor, every answer checked;
  `profile`: one page under cProfile.
- `table`: percentiles, page/SQL ratio and verdict of every page, as a Markdown table.
- `Run`: one run over the backends (SQLite, a throwaway PostgreSQL cluster): the machine, each
  backend's set-up and figures, failures; then the Markdown report and the exit status.
  `on_sqlite`: the same data set and app on SQLite alone, for the tests.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# --- the app and its users -----------------------------------------------------------------

@contextmanager
def serve(data, tmp: Path):
    """The real app on `data.url`, its clock stopped at `data.at`, its files under `tmp`; its
    connections closed at the end."""
    from app import create_app
    from core import db as core_db
    app = create_app({
        "DATABASE_URL": data.url, "SECRET_KEY": "bench-secret", "SVI_ENV": "development",
        "PUBLIC_BASE_URL": "", "LOG_LEVEL": "WARNING", "CLOCK": lambda: data.at,
        "JOURNAL_DIR": str(tmp / "journal"), "MAIL_OUTBOX_DIR": str(tmp / "outbox"),
        "WORKBOOK_STORAGE_DIR": str(tmp / "workbooks")})
    try:
        yield app
    finally:
        core_db.dispose(app)


def login(client, email: str, password: str):
    """Log a user in through the real login form (CSRF token read from the page); the client."""
    page = client.get("/connexion").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("no CSRF token on the login page")
    answer = client.post("/connexion", data={"email": email, "password": password,
                                              "csrf_token": token.group(1)})
    if answer.status_code != 302:
        raise RuntimeError(f"login of {email} refused ({answer.status_code})")
    return client


class Html(HTMLParser):
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


# --- measuring -----------------------------------------------------------------------------

@dataclass
class Page:
    """One page under test and the hand-written statement that reads the same data."""

    key: str
    title: str
    #: Who requests it: a key of the logged-in clients given to `measure`.
    user: str
    url: str
    #: Text every answer must contain.
    expected: str
    sql: str
    params: dict
    #: (page's HTML, statement's rows) -> problems; none when the page shows the SQL's data.
    check: Callable[[str, list], list[str]]
    #: SQLAlchemy types of some parameters (instants stored as UTC text on SQLite).
    types: dict = field(default_factory=dict)
    #: p95 target in ms; None: measured, not judged.
    target: float | None = None

    def statement(self):
        """The floor as a SQLAlchemy statement, to execute with `params`."""
        from sqlalchemy import bindparam, text
        return text(self.sql).bindparams(*(bindparam(k, type_=t) for k, t in self.types.items()))


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


def measure(app, pages: list[Page], clients: dict, requests: int, warmup: int,
            only: set[str] | None = None) -> dict[str, Timings]:
    """Request each page (those of `only` when given) `requests` times with its user's client,
    its statement as many times, interleaved (page then SQL on even rounds, SQL then page on odd
    ones), after `warmup` untimed rounds. The first answer of each is checked against the other
    (`Page.check`), every answer for status and text."""
    todo = [p for p in pages if only is None or p.key in only]
    statements = {p.key: p.statement() for p in todo}
    results = {p.key: Timings() for p in todo}
    with app.extensions["svi.engine"].connect() as conn, _FullCollections() as collections:
        def run_sql(page: Page) -> tuple[float, list]:
            t = time.perf_counter()
            rows = conn.execute(statements[page.key], page.params).all()
            elapsed = (time.perf_counter() - t) * 1000
            conn.rollback()
            return elapsed, rows

        def run_page(page: Page) -> tuple[float, str]:
            before = collections.count
            t = time.perf_counter()
            answer = clients[page.user].get(page.url)
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


def profile(page: Page, clients: dict, requests: int, out=sys.stdout) -> None:
    """cProfile `requests` requests of one page; print the 30 costliest functions."""
    client = clients[page.user]
    client.get(page.url)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.get(page.url)
    profiler.disable()
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(30)
    print(buffer.getvalue(), file=out)


# --- report --------------------------------------------------------------------------------

def table(results: dict[str, dict[str, Timings]], titles: dict[str, str],
          targets: dict[str, float | None], *, header_target: float | None = None,
          ratio_digits: int = 1) -> tuple[str, bool]:
    """The Markdown table of every backend's pages, and whether every judged page passed.

    A page passes when its p95 is under its target (`targets`, None: measured only) and its
    check found no problem. With `header_target`, the target column names that one target and
    its cells say PASS or FAIL only; otherwise each cell names its page's target."""
    target_header = "Target" if header_target is None else f"Target p95 < {header_target:.0f} ms"
    lines = ["| Database | Page | Requests | Page p50 / p95 / max (ms) | "
             f"SQL p50 / p95 / max (ms) | p95 page/SQL | Full GCs | {target_header} |",
             "|:---|:---|---:|---:|---:|---:|---:|:---|"]
    passed = True
    for backend, pages in results.items():
        for key, t in pages.items():
            p = [percentile(t.page, s) for s in (0.5, 0.95)] + [max(t.page)]
            q = [percentile(t.sql, s) for s in (0.5, 0.95)] + [max(t.sql)]
            target = targets.get(key)
            if target is not None:
                ok = p[1] < target and not t.problems
                passed &= ok
                verdict = "PASS" if ok else "FAIL"
                if header_target is None:
                    verdict = f"p95 < {target:.0f} ms: {verdict}"
            else:
                verdict = "(measured)" if not t.problems else "FAIL (check)"
                passed &= not t.problems
            lines.append(f"| {backend} | {titles[key]} | {len(t.page)} | "
                         f"{p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | "
                         f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} | "
                         f"{p[1] / q[1]:.{ratio_digits}f}× | {t.full_gcs} | {verdict} |")
    return "\n".join(lines), passed


def software() -> str:
    """Versions of what the pages run on."""
    import sqlite3
    from importlib.metadata import version

    from bench.report import _postgres_version
    return (f"Flask {version('flask')}, Jinja2 {version('jinja2')}, WTForms {version('wtforms')}, "
            f"SQLAlchemy {version('sqlalchemy')}, psycopg {version('psycopg')}, "
            f"SQLite {sqlite3.sqlite_version}, PostgreSQL {_postgres_version()}")


# --- a run over the backends ---------------------------------------------------------------

def add_run_options(parser: argparse.ArgumentParser, page_keys: list[str]) -> None:
    """--no-postgres, --no-sqlite and --profile PAGE (one of `page_keys`)."""
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--profile", choices=page_keys,
                        help="instead of measuring, profile this page (cProfile) and print the top")


def backends(args: argparse.Namespace) -> list[str]:
    """The backends the options leave: SQLite, then PostgreSQL."""
    return [b for b, skip in (("sqlite", args.no_sqlite), ("postgresql", args.no_postgres))
            if not skip]


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh, empty database URL for `backend` ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench.sqlite3'}"
    else:
        from bench.servers import postgres
        with postgres() as (url, _pid):
            yield url


@contextmanager
def on_sqlite(build: Callable[[str], object], tmp: Path) -> Iterator[tuple]:
    """(app, data): the data set `build(url)` makes in a fresh SQLite database under `tmp`, and
    the real app on it (what the benchmarks' tests request)."""
    with database("sqlite", tmp) as url:
        data = build(url)
        with serve(data, tmp) as app:
            yield app, data


class Run:
    """One run of a benchmark over the backends: the machine, each backend's set-up, figures and
    failures; at the end, the Markdown report, printed and written to `path`."""

    def __init__(self, title: str, path: Path):
        import logging

        from bench import report
        self.title, self.path = title, path
        self.started, self.machine = time.monotonic(), report.machine()
        self.machine["Software"] = software()
        self.results: dict[str, dict[str, Timings]] = {}
        self.titles: dict[str, str] = {}
        self.targets: dict[str, float | None] = {}
        self.setups: list[str] = []
        self.failures: list[str] = []
        # The app logs nothing below WARNING: no log line is measured with the pages.
        logging.getLogger().setLevel(logging.WARNING)

    @contextmanager
    def backend(self, backend: str) -> Iterator[tuple[Path, str]]:
        """A temporary directory and a fresh database of `backend` for the block; an error in it
        is reported with the other figures, and the run goes on."""
        tmp = Path(tempfile.mkdtemp(prefix=f"svi-bench-{self.path.stem}-"))
        try:
            with database(backend, tmp) as url:
                yield tmp, url
        except Exception as exc:
            self.failures.append(f"{backend}: not measured: {exc!r}")
            print(f"  failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def built(self, backend: str, data) -> None:
        """Note what `data` holds (`data.counts`) and how long it took to build."""
        self.setups.append(f"{backend}: built in {data.built_seconds:.0f} s: " + ", ".join(
            f"{v:,} {k}" for k, v in data.counts.items()))

    def measured(self, backend: str, pages: list[Page], timings: dict[str, Timings]) -> None:
        """Keep a backend's figures, with the titles and targets of its pages."""
        self.results[backend] = timings
        self.titles.update({p.key: p.title for p in pages})
        self.targets.update({p.key: p.target for p in pages})

    def finish(self, setup: list[str], agreed: str, targets: str, **table_style) -> int:
        """Print the report and write it; the exit status: 0 when every judged page is under its
        target and every check agrees, 1 otherwise, 2 when a database could not be measured.

        `setup`: the benchmark's own set-up lines; `agreed`: what every check verified, said
        when none found a problem; `targets`: the targets, as the verdict line recalls them;
        `table_style`: keywords of `table`."""
        text, passed = (table(self.results, self.titles, self.targets, **table_style)
                        if self.results else ("(no results)", False))
        checks = [f"{b}, {self.titles[k]}: {p}" for b, r in self.results.items()
                  for k, t in r.items() for p in t.problems]
        status = 2 if self.failures else (0 if passed else 1)
        verdict = {0: "PASS", 1: "FAIL", 2: "DOUBTFUL (a database was not measured)"}[status]
        md = "\n".join([
            f"# SVI benchmark: {self.title}", "", "## Machine", "",
            *(f"- **{k}**: {v}" for k, v in self.machine.items()), "", "## Set-up", "",
            *(f"- {s}" for s in setup + self.setups), "", "## Results", "", text, "",
            "## Checks", "",
            *(f"- {c}" for c in checks + self.failures or [agreed]), "",
            f"**Verdict: {verdict}** ({targets}; benchmark took "
            f"{time.monotonic() - self.started:.0f} s)", ""])
        self.path.parent.mkdir(exist_ok=True)
        self.path.write_text(md)
        print("\n" + md + f"\nWritten to {self.path}")
        return status
