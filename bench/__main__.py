"""`python -m bench`: a full incoming-call step against a bare Flask endpoint, side by side.

Between them, the step's ceiling: the signature check and the durable write alone
(`bench/ceiling.py`). Each server runs under gunicorn with the same options on 127.0.0.1, is
warmed up, then loaded by wrk at a fixed concurrency for a fixed time with distinct signed
Twilio webhooks.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench import report
from bench.load import caller_pool, run_wrk, write_requests
from bench.servers import (Gunicorn, app_env, count_rows, postgres, seed_history, setup_database,
                           tree_cpu_seconds)

RESULTS = Path(__file__).with_name("results")
TARGET_RATIO, TARGET_P99_MS = 0.5, 50.0
#: Requests generated per second of load: far above what the real app serves on this class of
#: machine, so wrk never wraps around to a CallSid already used.
REQUESTS_PER_SECOND = 3000
#: CPU used by other processes above which the figures are flagged as disturbed.
NOISE_CORES = 0.2
BARE = "Bare Flask (fixed TwiML)"
CEILING = "Ceiling (signature + write only)"
SERVERS = (("bare", BARE),
           ("ceiling-sqlite", f"{CEILING}, SQLite"), ("sqlite", "Real app, SQLite"),
           ("ceiling-postgres", f"{CEILING}, PostgreSQL"), ("postgres", "Real app, PostgreSQL"))
APPS = {"bare": "bench.bare:create_app()", "ceiling": "bench.ceiling:create_app()"}
WORKER_CHOICE = (
    "one sync worker per core. A call step is CPU-bound Python (SQLAlchemy, Flask, TwiML; the "
    "database itself answers in microseconds), so threads only queue behind the GIL: in trials "
    "on this machine gthread (2 workers × 4 threads) multiplied p99 several times, and 3 or 4 "
    "sync workers gave no more throughput. Requests beyond the 2 in service wait in the "
    "listen backlog, which is what the p50/p99 at 8 connections show.")


class Overtime(Exception):
    """The whole benchmark ran past its time budget."""


def _overtime(signum, frame):
    raise Overtime("the benchmark ran past its time budget and was stopped")


def parse_args() -> argparse.Namespace:
    """Command-line options; the defaults are the reference run of `make bench`."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=12, help="seconds of load per server")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per worker (gthread if > 1)")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--callers", type=int, default=3000, help="distinct caller numbers")
    p.add_argument("--history", type=int, default=20000, help="past calls stored before the run")
    p.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL runs")
    p.add_argument("--no-ceiling", action="store_true",
                   help="skip the ceiling runs (signature + durable write only)")
    p.add_argument("--only", choices=[key for key, _ in SERVERS], action="append",
                   help="run only this server (repeatable)")
    p.add_argument("--workbook-only", action="store_true",
                   help="run only the workbook export benchmark (python -m bench.workbook)")
    return p.parse_args()


def gunicorn_options(args: argparse.Namespace) -> list[str]:
    """The same worker options for every server."""
    if args.threads > 1:
        return ["--workers", str(args.workers), "--worker-class", "gthread",
                "--threads", str(args.threads)]
    return ["--workers", str(args.workers), "--worker-class", "sync"]


def measure(server: Gunicorn, args: argparse.Namespace, warm: Path, load: Path,
            database_url: str | None = None, database_pid: int | None = None) -> dict:
    """Warm up, then load the server; add CPU use, logged rows and logged errors."""
    run = dict(connections=args.connections, threads=args.wrk_threads)
    run_wrk(server.port, warm, seconds=args.warmup, **run)
    time.sleep(0.5)
    before = count_rows(database_url) if database_url else None

    def server_cpu() -> float:
        return server.cpu_seconds() + (tree_cpu_seconds(database_pid) if database_pid else 0)
    cpu = server_cpu()
    result = run_wrk(server.port, load, seconds=args.duration, **run)
    seconds = result["duration_us"] / 1e6
    result["server_cpu"] = (server_cpu() - cpu) / seconds
    result["wrk_cpu"] = result["cpu_s"] / seconds
    result["other_cpu"] = max(0.0, result["machine_cpu_s"] / seconds - result["server_cpu"]
                              - result["wrk_cpu"])
    if database_url:
        time.sleep(0.5)  # requests still in flight when wrk stopped
        after = count_rows(database_url)
        result["calls_logged"], result["events_logged"] = (after[0] - before[0],
                                                           after[1] - before[1])
    result["server_errors"] = server.logged_errors()
    return result


def bench_server(key: str, args: argparse.Namespace, options: list[str], tmp: Path,
                 callers: list[str], warm: Path, load: Path) -> tuple[dict, float | None]:
    """Prepare the database if any, start gunicorn, measure, stop everything.

    Returns the figures and the share of callers offered their last département."""
    with ExitStack() as stack:
        url, pid, returning = None, None, None
        database = key.removeprefix("ceiling-")
        if database == "sqlite":
            url = f"sqlite:///{tmp / f'{key}.sqlite3'}"
        elif database == "postgres":
            url, pid = stack.enter_context(postgres())
        if url:
            setup_database(url)
            returning = seed_history(url, callers, args.history, random.Random(7))
        app = APPS.get(key.split("-")[0], "app:create_app()")
        server = stack.enter_context(Gunicorn(app, app_env(url or "sqlite://"), options,
                                              RESULTS / f"{key}.log"))
        return measure(server, args, warm, load, url, pid), returning


def problems(r: dict, connections: int) -> list[str]:
    """What makes a run's figures doubtful: errors, reused CallSids, calls not logged."""
    found = []
    sockets = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    if r["non200"]:
        found.append(f"{r['non200']} non-200 responses")
    if sockets:
        found.append(f"{sockets} socket errors or timeouts")
    if r["server_errors"]:
        found.append(f"{r['server_errors']} errors in the server log")
    if "calls_logged" in r:
        ok = r["requests"] - r["non200"]
        if r["wraps"]:
            found.append(f"wrk ran out of distinct CallSids {r['wraps']} time(s)")
        for what in ("calls", "events"):
            logged = r[f"{what}_logged"]
            if not ok <= logged <= ok + connections:
                found.append(f"{logged} {what} logged for {ok} answered requests")
    return found


def main() -> int:
    """Run every server in turn, print the report and write it to bench/results/latest.md."""
    args = parse_args()
    if args.workbook_only:
        from bench import workbook
        return workbook.main([])
    only = set(args.only or [key for key, _ in SERVERS])
    if args.no_postgres:
        only -= {"postgres", "ceiling-postgres"}
    if args.no_ceiling:
        only -= {"ceiling-sqlite", "ceiling-postgres"}
    if not shutil.which("wrk"):
        print("wrk is missing: run `bash scripts/system-deps.sh bench`", file=sys.stderr)
        return 2
    started, machine = time.monotonic(), report.machine()
    options = gunicorn_options(args)
    rng = random.Random(20240601)
    callers = caller_pool(rng, args.callers)
    tmp = Path(tempfile.mkdtemp(prefix="svi-bench-"))
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, dict] = {}
    failures: list[str] = []
    returning = None
    budget = len(only) * (args.warmup + args.duration + 40) + 60
    print(f"Benchmark: gunicorn {' '.join(options)}, {args.connections} connections, "
          f"{args.duration} s per server (stopped if it runs past {budget} s)", flush=True)
    signal.signal(signal.SIGALRM, _overtime)
    signal.alarm(budget)
    try:
        warm, load = tmp / "warmup.tsv", tmp / "load.tsv"
        write_requests(warm, max(5000, args.warmup * REQUESTS_PER_SECOND), 1, callers, rng)
        write_requests(load, max(20000, args.duration * REQUESTS_PER_SECOND), 2, callers, rng)
        for key, name in SERVERS:
            if key in only:
                print(f"- {name}…", flush=True)
                try:
                    results[name], share = bench_server(key, args, options, tmp, callers, warm,
                                                        load)
                    returning = share if share is not None else returning
                except Overtime:
                    raise
                except Exception as exc:  # report it with the other figures, go on
                    failures.append(f"{name}: not measured: {str(exc).splitlines()[0]}")
                    print(f"  failed: {exc}", file=sys.stderr, flush=True)
    except Overtime as exc:
        failures.append(str(exc))
    finally:
        signal.alarm(0)
        for server in list(Gunicorn.running):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    text, md, status = render(args, options, machine, results, failures, returning,
                              time.monotonic() - started)
    print("\n" + text)
    (RESULTS / "latest.md").write_text(md)
    print(f"\nWritten to {RESULTS / 'latest.md'}")
    return status


def render(args, options, machine, results, failures, returning,
           elapsed) -> tuple[str, str, int]:
    """The report as text and as Markdown, and the exit status (0 pass, 1 fail, 2 doubtful)."""
    rows = [report.row(name, r) for name, r in results.items()]
    bare = results.get(BARE)
    verdicts, targets, ceilings, issues, notes = [], [], [], list(failures), []
    for name, r in results.items():
        issues += [f"{name}: {p}" for p in problems(r, args.connections)]
        if r["other_cpu"] > NOISE_CORES:
            notes.append(f"{name}: other processes used {r['other_cpu']:.2f} cores during the "
                         "run: the machine was busy, these figures are pessimistic.")
        if name.startswith(CEILING) and bare:
            ceilings.append(f"{name}: throughput {r['rps'] / bare['rps']:.2f} × bare, p99 "
                            f"{r['p99_us'] / 1000:.1f} ms: the most a step that commits the call "
                            "before answering reaches here (not judged).")
        elif name != BARE and bare:
            ratio, p99 = r["rps"] / bare["rps"], r["p99_us"] / 1000
            verdicts.append(ratio >= TARGET_RATIO and p99 < TARGET_P99_MS)
            targets.append(
                f"{name}: throughput {ratio:.2f} × bare "
                f"({'≥' if ratio >= TARGET_RATIO else '<'} {TARGET_RATIO}), p99 {p99:.1f} ms "
                f"({'<' if p99 < TARGET_P99_MS else '≥'} {TARGET_P99_MS:.0f} ms): "
                f"{'PASS' if verdicts[-1] else 'FAIL'}")
    if bare:
        notes.append(f"wrk shares the machine's cores: it used {bare['wrk_cpu']:.2f} cores during "
                     "the bare run and about 0.05 during the real ones, so the bare figure is a "
                     "lower bound and the ratio, if anything, flattering.")
    if any(name.endswith("PostgreSQL") for name in results):
        notes.append("Server CPU of the PostgreSQL runs includes the PostgreSQL processes.")
    setup = [
        f"gunicorn {' '.join(options)} for every server, bound to 127.0.0.1, LOG_LEVEL=WARNING, "
        "no access log; the real app checks every Twilio signature (TWILIO_AUTH_TOKEN and "
        "PUBLIC_BASE_URL set).",
        "Ceiling: the real app whose POST /ivr/voice only checks the signature and commits the "
        "call and its event, as the real step does, then answers the bare endpoint's TwiML "
        "(`bench/ceiling.py`).",
        f"Why: {WORKER_CHOICE}" if args.workers == 2 and args.threads == 1 else
        "Why: worker options given on the command line.",
        f"Load: wrk, {args.wrk_threads} thread{'s' if args.wrk_threads > 1 else ''}, "
        f"{args.connections} connections, "
        f"{args.duration} s after {args.warmup} s of warm-up, on the same machine; every request "
        f"is a distinct signed POST /ivr/voice (new CallSid) from {args.callers} callers "
        "(3 % hidden numbers).",
        f"Database: fresh, migrated and seeded by `flask --app app setup`, plus {args.history} "
        "past calls" + (f" ({returning:.0%} of the callers are offered their last département)"
                        if returning is not None else "") + ".",
    ]
    if issues:
        status, word = 2, "DOUBTFUL (see checks)"
    elif not verdicts:
        status, word = 0, "NOT JUDGED (needs the bare run and a real one)"
        targets = ["not judged: the bare run and a real run are both needed."]
    else:
        status, word = (0, "PASS") if all(verdicts) else (1, "FAIL")
    checks = issues or ["no non-200 response, no socket error, no error logged, one call and "
                        "one event stored per answered request (± requests in flight at the end)."]
    goal = f"throughput ≥ {TARGET_RATIO} × bare, p99 < {TARGET_P99_MS:.0f} ms"
    text = ["Machine", *(f"  {k}: {v}" for k, v in machine.items()), "", "Set-up",
            *(f"  {s}" for s in setup), "", report.text_table(rows), "", f"Targets: {goal}",
            *(f"  {t}" for t in targets + ceilings), "", "Checks",
            *(f"  {c}" for c in checks + notes), "",
            f"Verdict: {word} (benchmark took {elapsed:.0f} s)"]
    md = ["# SVI benchmark: incoming call vs bare Flask", "", "## Machine", "",
          *(f"- **{k}**: {v}" for k, v in machine.items()), "", "## Set-up", "",
          *(f"- {s}" for s in setup), "", "## Results", "", report.markdown_table(rows), "",
          f"## Targets ({goal})", "", *(f"- {t}" for t in targets + ceilings), "",
          "## Checks", "",
          *(f"- {c}" for c in checks + notes), "",
          f"**Verdict: {word}** (benchmark took {elapsed:.0f} s)", ""]
    return "\n".join(text), "\n".join(md), status


if __name__ == "__main__":
    sys.exit(main())
