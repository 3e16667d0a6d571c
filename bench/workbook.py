"""`python -m bench.workbook`: the national indicator workbook of 1,000,000 solicitations.

A SQLite database is filled with solicitations spread over a year. Each export then runs in a
fresh Python process that reports its wall time, CPU time and peak memory (VmHWM):
- "read": only streams the rows out of the database (`tracking.exports.iter_rows`);
- "ours": `tracking.exports.export_workbook`, the real export (same rows, into `write_workbook`);
- "raw": the same rows written by plain openpyxl write-only mode (`ws.append`, no style).
Each is run over a period of about 100,000 rows and over the whole year, to show that memory
stays flat. Writing-only speeds subtract the "read" time from the others.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import string
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import report

RESULTS = Path(__file__).with_name("results") / "workbook.md"
TARGET_RATIO, TARGET_MEMORY_MB = 0.8, 300
YEAR = 2026
BATCH = 20_000
KINDS = {"read": "Database read only (iter_rows)",
         "ours": "Ours: export_workbook → write_workbook",
         "raw": "Raw openpyxl write-only, same rows"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are the reference run."""
    p = argparse.ArgumentParser(prog="python -m bench.workbook",
                                description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="solicitations in the database")
    p.add_argument("--small", type=int, default=100_000,
                   help="rows of the smaller export (memory must not grow with the count)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- the database ------------------------------------------------------------------------

def build_database(path: Path, rows: int, rng: random.Random) -> None:
    """Migrate, seed the 101 départements and the taxonomy, then bulk-insert calls and rows."""
    from sqlalchemy import insert, select
    from sqlalchemy.orm import Session

    from core.cli import upgrade
    from core.db import make_engine
    from directory.models import Departement
    from directory.operations import seed_departements
    from tracking.models import Call, Channel, Outcome, Solicitation, Source, Thematique
    from tracking.taxonomy import load_file

    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as db:
        seed_departements(db)
        load_file(db)
        db.commit()
        zones = {code: ZoneInfo(tz) for code, tz in
                 db.execute(select(Departement.code, Departement.timezone))}
        # (thématique, motif, sous-motif) ids; None stands for « À qualifier ».
        choices = [(None, None, None)]
        for them in db.scalars(select(Thematique)):
            choices.append((them.id, None, None))
            for motif in them.motifs:
                choices.append((them.id, motif.id, None))
                choices += [(them.id, motif.id, s.id) for s in motif.sous_motifs]
    codes = list(zones)
    outcomes = list(Outcome)
    outcome_weights = [55, 15, 3, 10, 1, 7, 5, 3, 1]
    channels = [Channel.phone_direct, Channel.email, Channel.form, Channel.other]
    comments = ["", "", "", "", "rappel demandé", "mot de passe réinitialisé",
                "=HYPERLINK(\"http://exemple.invalid\")", "voir ticket 4521"]
    year_seconds = (datetime(YEAR + 1, 1, 1) - datetime(YEAR, 1, 1)).total_seconds()
    alphabet = string.ascii_uppercase + string.digits
    calls, solicitations, call_id, made = [], [], 0, 0

    def flush(conn):
        if calls:
            conn.execute(insert(Call), calls)
        if solicitations:
            conn.execute(insert(Solicitation), solicitations)
        calls.clear()
        solicitations.clear()

    with engine.begin() as conn:
        while made < rows:
            code = rng.choice(codes)
            local = datetime(YEAR, 1, 1) + timedelta(seconds=rng.randrange(int(year_seconds)))
            at = local.replace(tzinfo=zones[code]).astimezone(UTC)
            if rng.random() < 0.7:  # an SVI call, sometimes split into two motifs
                call_id += 1
                outcome = rng.choices(outcomes, outcome_weights)[0]
                answered = outcome is Outcome.answered
                calls.append(dict(
                    id=call_id, call_sid=f"CA{call_id:032x}", caller_masked="+336••••••78",
                    called_number="+33806000156", status="completed", started_at=at,
                    departement_code=code, outcome=outcome, updated_at=at,
                    wait_seconds=rng.randrange(3, 60) if answered or rng.random() < 0.3 else None,
                    talk_seconds=rng.randrange(30, 900) if answered else None))
                parts = 2 if rng.random() < 0.15 else 1
                channel, source = Channel.phone_svi, Source.svi
            else:
                parts, channel, source = 1, rng.choice(channels), Source.manual
            for part in range(min(parts, rows - made)):
                made += 1
                them, motif, sous = rng.choice(choices)
                solicitations.append(dict(
                    id=made, reference="S-" + "".join(rng.choices(alphabet, k=10)),
                    departement_code=code, occurred_at=at, channel=channel,
                    call_id=call_id if channel is Channel.phone_svi else None,
                    is_primary=part == 0, thematique_id=them, motif_id=motif,
                    sous_motif_id=sous, comment=rng.choice(comments),
                    resolved_first_level=rng.choice((True, False, None)),
                    escalated=rng.choice((True, False, None)), source=source,
                    created_at=at, updated_at=at))
            if len(solicitations) >= BATCH:
                flush(conn)
        flush(conn)
    engine.dispose()


def period_of(rows: int, total: int) -> tuple[date, date]:
    """A period starting on 1 January holding about `rows` of the `total` spread over the year."""
    days = (date(YEAR + 1, 1, 1) - date(YEAR, 1, 1)).days
    wanted = min(days, math.ceil(days * rows / total))
    return date(YEAR, 1, 1), date(YEAR, 1, 1) + timedelta(days=wanted - 1)


# --- one export, in its own process ------------------------------------------------------

def child(spec: dict) -> dict:
    """Run one export and measure it; what the parent prints as JSON."""
    from openpyxl import Workbook
    from sqlalchemy.orm import Session

    from core.db import make_engine
    from tracking.columns import HEADERS
    from tracking.exports import export_workbook, iter_rows
    from tracking.workbook import MAX_ROWS_PER_SHEET, history_sheet_title

    engine = make_engine(spec["url"])
    start, end = date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"])
    out = Path(spec["out"])
    with Session(engine) as db:
        cpu, wall = time.process_time(), time.perf_counter()
        if spec["kind"] == "ours":
            count = export_workbook(db, departement=None, start=start, end=end, path=out)
        elif spec["kind"] == "raw":
            wb, count, ws = Workbook(write_only=True), 0, None
            for row in iter_rows(db, departement=None, start=start, end=end):
                if count % MAX_ROWS_PER_SHEET == 0:
                    ws = wb.create_sheet(history_sheet_title(count // MAX_ROWS_PER_SHEET + 1))
                    ws.append(HEADERS)
                ws.append(row)
                count += 1
            wb.save(out)
        else:
            count = sum(1 for _ in iter_rows(db, departement=None, start=start, end=end))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    return {"kind": spec["kind"], "rows": count, "wall": wall, "cpu": cpu,
            "peak_mb": _peak_mb(), "file_mb": out.stat().st_size / 2**20 if out.exists() else 0,
            "sheets": _sheets(out) if out.exists() else []}


def _peak_mb() -> float:
    """Peak resident memory of this process (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sheets(path: Path) -> list[str]:
    """Sheet names of a saved workbook, without loading its rows."""
    from openpyxl import load_workbook
    with zipfile.ZipFile(path):  # a valid zip, or this raises
        pass
    wb = load_workbook(path, read_only=True)
    try:
        return wb.sheetnames
    finally:
        wb.close()


def run_child(spec: dict) -> dict:
    """Run one export in a fresh interpreter so that its peak memory is its own."""
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-m", "bench.workbook", "--child", json.dumps(spec)],
                         cwd=root, capture_output=True, text=True, timeout=3 * 3600)
    if run.returncode != 0:
        raise RuntimeError(f"{spec['kind']} failed: {run.stderr.strip().splitlines()[-1:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


# --- the report --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Fill the database, run every export, print the report, write bench/results/workbook.md."""
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    started, machine = time.monotonic(), report.machine()
    machine["Software"] = (f"openpyxl {version('openpyxl')} "
                           f"({'with' if _has_lxml() else 'without'} lxml), "
                           f"SQLAlchemy {version('sqlalchemy')}, SQLite {_sqlite_version()}")
    results: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="svi-bench-workbook-") as tmp:
        db_path = Path(tmp) / "svi.sqlite3"
        print(f"Filling a SQLite database with {args.rows:,} solicitations…", flush=True)
        t = time.perf_counter()
        build_database(db_path, args.rows, random.Random(20260101))
        built = time.perf_counter() - t
        for size in sorted({min(args.small, args.rows), args.rows}):
            start, end = period_of(size, args.rows)
            results[size] = {}
            for kind in KINDS:
                print(f"- {KINDS[kind]}, {start} → {end}…", flush=True)
                results[size][kind] = run_child(dict(
                    kind=kind, url=f"sqlite:///{db_path}", start=start.isoformat(),
                    end=end.isoformat(), out=str(Path(tmp) / f"{kind}-{size}.xlsx")))
    text, status = render(args, machine, results, built, time.monotonic() - started)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print("\n" + text + f"\nWritten to {RESULTS}")
    return status


def render(args, machine: dict, results: dict[int, dict[str, dict]], built: float,
           elapsed: float) -> tuple[str, int]:
    """The Markdown report and the exit status (0 pass, 1 fail, 2 doubtful)."""
    table = ["| Export | Rows | Wall (s) | Rows/s | CPU (s) | Peak memory (MB) | File (MB) |",
             "|:---|---:|---:|---:|---:|---:|---:|"]
    for size, runs in results.items():
        for kind, r in runs.items():
            table.append(f"| {KINDS[kind]} | {r['rows']:,} | {r['wall']:.1f} | "
                         f"{r['rows'] / r['wall']:,.0f} | {r['cpu']:.1f} | {r['peak_mb']:.0f} | "
                         + (f"{r['file_mb']:.1f} |" if kind != "read" else "— |"))
    issues, verdicts, targets = [], [], []
    big = results[max(results)]
    ours, raw, read = big["ours"], big["raw"], big["read"]
    if not ours["rows"] == raw["rows"] == read["rows"]:
        issues.append(f"row counts differ: {ours['rows']} ours, {raw['rows']} raw, "
                      f"{read['rows']} read")
    if max(results) == args.rows and ours["rows"] != args.rows:
        issues.append(f"the whole-year export wrote {ours['rows']} rows out of {args.rows}")
    expected_sheets = ["Historique des sollicitations", "Résultats", "Synthèse par département",
                       "Listes"]
    if ours["rows"] <= 1_048_575 and ours["sheets"] != expected_sheets:
        issues.append(f"unexpected sheets: {ours['sheets']}")
    for size, runs in results.items():
        peak = runs["ours"]["peak_mb"]
        verdicts.append(peak < TARGET_MEMORY_MB)
        targets.append(f"Peak memory at {runs['ours']['rows']:,} rows: {peak:.0f} MB "
                       f"({'<' if verdicts[-1] else '≥'} {TARGET_MEMORY_MB} MB): "
                       f"{'PASS' if verdicts[-1] else 'FAIL'}")
    ratio = (ours["rows"] / ours["wall"]) / (raw["rows"] / raw["wall"])
    verdicts.append(ratio >= TARGET_RATIO)
    targets.append(f"Rows/s at {ours['rows']:,} rows: ours {ours['rows'] / ours['wall']:,.0f}, "
                   f"raw {raw['rows'] / raw['wall']:,.0f}, ratio {ratio:.2f} "
                   f"({'≥' if verdicts[-1] else '<'} {TARGET_RATIO}): "
                   f"{'PASS' if verdicts[-1] else 'FAIL'}")
    writing = [(r["wall"] - read["wall"], r["cpu"] - read["cpu"]) for r in (ours, raw)]
    notes = [
        f"Writing only (the read run's time subtracted): ours {ours['rows'] / writing[0][0]:,.0f} "
        f"rows/s, raw {raw['rows'] / writing[1][0]:,.0f} rows/s, ratio "
        f"{writing[1][0] / writing[0][0]:.2f} by wall time, {writing[1][1] / writing[0][1]:.2f} "
        "by CPU time.",
        f"Memory growth from {min(results):,}-row to {max(results):,}-row period: "
        f"{big['ours']['peak_mb'] - results[min(results)]['ours']['peak_mb']:+.0f} MB (ours), "
        f"{raw['peak_mb'] - results[min(results)]['raw']['peak_mb']:+.0f} MB (raw).",
        "Ours writes more than raw: a styled header with comments, the date format, drop-down "
        "lists, the « Résultats » sheet (formulas, two charts), the « Synthèse par département » "
        "sheet (one row of formulas per département) and the hidden « Listes » sheet; it writes "
        "empty comments as empty cells where raw writes empty strings.",
        "The machine is shared: CPU time is the steadier figure when other processes run.",
    ]
    if issues:
        status, word = 2, "DOUBTFUL (see checks)"
    else:
        status, word = (0, "PASS") if all(verdicts) else (1, "FAIL")
    setup = [
        f"SQLite database filled with {args.rows:,} solicitations over {YEAR} in {built:.0f} s: "
        "101 départements, the default taxonomy, 70 % SVI calls (15 % of them split into two "
        "motifs) with outcome, wait and talk times, one comment in two with text, some looking "
        "like formulas.",
        "Each export runs in a fresh Python process; peak memory is its VmHWM (interpreter and "
        "imports included), rows/s counts from the query to the saved file.",
        "Exports are national (all départements, « Synthèse par département » included) over a "
        "period starting on 1 January: about "
        f"{min(results):,} rows, then the whole year.",
    ]
    lines = ["# SVI benchmark: the national indicator workbook", "", "## Machine", "",
             *(f"- **{k}**: {v}" for k, v in machine.items()), "", "## Set-up", "",
             *(f"- {s}" for s in setup), "", "## Results", "", *table, "",
             f"## Targets (peak memory < {TARGET_MEMORY_MB} MB, rows/s ≥ {TARGET_RATIO} × raw)",
             "", *(f"- {t}" for t in targets), "", "## Checks", "",
             *(f"- {c}" for c in issues or ["every run wrote the same rows; the workbook has "
                                            "the expected sheets."]),
             *(f"- {n}" for n in notes), "",
             f"**Verdict: {word}** (benchmark took {elapsed:.0f} s)", ""]
    return "\n".join(lines), status


def _has_lxml() -> bool:
    from openpyxl import LXML
    return LXML


def _sqlite_version() -> str:
    import sqlite3
    return sqlite3.sqlite_version


if __name__ == "__main__":
    sys.exit(main())
