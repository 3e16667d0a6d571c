"""`python -m bench`: a full incoming-call step against its ceiling and a bare Flask endpoint.

The ceiling (`bench/ceiling.py`) is a bare Flask endpoint that checks the Twilio signature and
commits one INSERT in the same database: the real step is judged against it, database by
database. Each server runs under gunicorn with the same options on 127.0.0.1, is warmed up,
then loaded by wrk at a fixed concurrency for a fixed time with distinct signed Twilio webhooks.
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
from bench.servers import (Gunicorn, app_env, count_rows, postgres, production_observability,
                           seed_history, setup_database, tree_cpu_seconds)

RESULTS = Path(__file__).with_name("results")
#: The real step against the ceiling of its own database: throughput ratio and p99.
TARGET_RATIO, TARGET_P99_MS = 0.8, 20.0
#: Requests generated per second of load: far above what the real app serves on this class of
#: machine, so wrk never wraps around to a CallSid already used.
REQUESTS_PER_SECOND = 3000
#: CPU used by other processes above which the figures are flagged as disturbed.
NOISE_CORES = 0.2
BARE = "Bare Flask (fixed TwiML)"
CEILING = "Ceiling (bare Flask + signature + 1 INSERT)"
STATEMENTS = "Ceiling + the real step's statements"
SERVERS = (("bare", BARE),
           ("ceiling-sqlite", f"{CEILING}, SQLite"), ("statements-sqlite", f"{STATEMENTS}, SQLite"),
           ("sqlite", "Real app, SQLite"),
           ("ceiling-postgres", f"{CEILING}, PostgreSQL"),
           ("statements-postgres", f"{STATEMENTS}, PostgreSQL"),
           ("postgres", "Real app, PostgreSQL"))
APPS = {"bare": "bench.bare:create_app()", "ceiling": "bench.ceiling:create_app()",
        "statements": "bench.statements:create_app()"}
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
                   help="skip the ceiling runs (bare Flask + signature + one INSERT)")
    p.add_argument("--no-statements", action="store_true",
                   help="skip the diagnostic runs (the ceiling + the real step's statements)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of every server, side by side; medians are reported")
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
        database = database_of(key)
        if database == "sqlite":  # a fresh file for every run, rounds included
            url = f"sqlite:///{Path(tempfile.mkdtemp(dir=tmp)) / f'{key}.sqlite3'}"
        elif database == "postgres":
            url, pid = stack.enter_context(postgres())
        if url:
            setup_database(url)
            returning = seed_history(url, callers, args.history, random.Random(7))
        app, env = APPS.get(key.split("-")[0]), app_env(url or "sqlite://")
        if app is None:  # the real app, with its production logs and metrics
            app, env = "app:create_app()", production_observability(
                env, Path(tempfile.mkdtemp(dir=tmp)) / "metrics")
        server = stack.enter_context(Gunicorn(app, env, options, RESULTS / f"{key}.log"))
        return measure(server, args, warm, load, url, pid), returning


def database_of(key: str) -> str | None:
    """The database a server runs on: the last part of its key ("ceiling-sqlite"), none for
    the bare endpoint."""
    return None if key == "bare" else key.rsplit("-", 1)[-1]


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
        # The ceiling writes the call only; the real step writes the call and its event.
        for what in ("calls", "events") if r.get("kind") != "ceiling" else ("calls",):
            logged = r[f"{what}_logged"]
            if not ok <= logged <= ok + connections:
                found.append(f"{logged} {what} logged for {ok} answered requests")
    return found


def main() -> int:
    """Run every server in turn (`--repeat` rounds), print the report and write it to
    bench/results/latest.md."""
    args = parse_args()
    if args.workbook_only:
        from bench import workbook
        return workbook.main([])
    only = set(args.only or [key for key, _ in SERVERS])
    if args.no_postgres:
        only -= {"postgres", "ceiling-postgres", "statements-postgres"}
    if args.no_ceiling:
        only -= {"ceiling-sqlite", "ceiling-postgres"}
    if args.no_statements:
        only -= {"statements-sqlite", "statements-postgres"}
    if not shutil.which("wrk"):
        print("wrk is missing: run `bash scripts/system-deps.sh bench`", file=sys.stderr)
        return 2
    started, machine = time.monotonic(), report.machine()
    options = gunicorn_options(args)
    rng = random.Random(20240601)
    callers = caller_pool(rng, args.callers)
    tmp = Path(tempfile.mkdtemp(prefix="svi-bench-"))
    RESULTS.mkdir(exist_ok=True)
    rounds: list[dict[str, dict]] = []
    failures: list[str] = []
    returning = None
    budget = args.repeat * len(only) * (args.warmup + args.duration + 40) + 60
    print(f"Benchmark: gunicorn {' '.join(options)}, {args.connections} connections, "
          f"{args.duration} s per server, {args.repeat} round(s) "
          f"(stopped if it runs past {budget} s)", flush=True)
    signal.signal(signal.SIGALRM, _overtime)
    signal.alarm(budget)
    try:
        warm, load = tmp / "warmup.tsv", tmp / "load.tsv"
        write_requests(warm, max(5000, args.warmup * REQUESTS_PER_SECOND), 1, callers, rng)
        write_requests(load, max(20000, args.duration * REQUESTS_PER_SECOND), 2, callers, rng)
        for number in range(1, args.repeat + 1):
            rounds.append({})
            for key, name in SERVERS:
                if key in only:
                    print(f"- round {number}: {name}…", flush=True)
                    try:
                        r, share = bench_server(key, args, options, tmp, callers, warm, load)
                        r["kind"] = key.split("-")[0]
                        rounds[-1][key] = r
                        returning = share if share is not None else returning
                        print(f"  {r['rps']:.0f} requests/s, p99 {r['p99_us'] / 1000:.1f} ms, "
                              f"{report.cpu_ms(r):.2f} ms of server CPU per request", flush=True)
                    except Overtime:
                        raise
                    except Exception as exc:  # report it with the other figures, go on
                        failures.append(f"{name} (round {number}): not measured: "
                                        f"{str(exc).splitlines()[0]}")
                        print(f"  failed: {exc}", file=sys.stderr, flush=True)
    except Overtime as exc:
        failures.append(str(exc))
    finally:
        signal.alarm(0)
        for server in list(Gunicorn.running):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    text, md, status = render(args, options, machine, rounds, failures, returning,
                              time.monotonic() - started)
    print("\n" + text)
    (RESULTS / "latest.md").write_text(md)
    print(f"\nWritten to {RESULTS / 'latest.md'}")
    return status


def ratios(rounds: list[dict[str, dict]]) -> dict[str, list[tuple[float, float, float]]]:
    """Per server, per round where both were measured: (× its ceiling, × bare) in throughput,
    and × its ceiling in CPU (the ceiling's CPU per request over the server's).

    A real step is compared with the ceiling on its own database, measured in the same round;
    a ceiling's own ratio to the ceiling is 1."""
    found: dict[str, list[tuple[float, float]]] = {}
    for measured in rounds:
        bare = measured.get("bare")
        for key, r in measured.items():
            ceiling = measured.get(f"ceiling-{database_of(key)}")
            if key == "bare" or ceiling is None:
                continue
            found.setdefault(key, []).append(
                (r["rps"] / ceiling["rps"], r["rps"] / bare["rps"] if bare else float("nan"),
                 report.cpu_ms(ceiling) / report.cpu_ms(r)))
    return found


def render(args, options, machine, rounds, failures, returning,
           elapsed) -> tuple[str, str, int]:
    """The report as text and as Markdown, and the exit status (0 pass, 1 fail, 2 doubtful)."""
    names = dict(SERVERS)
    keys = [key for key, _ in SERVERS if any(key in measured for measured in rounds)]
    runs = {key: [measured[key] for measured in rounds if key in measured] for key in keys}
    per_round = ratios(rounds)
    rows = [report.row(names[key], report.median_run(runs[key]),
                       *(report.median([x[i] for x in per_round.get(key, [])]) for i in (0, 1, 2)))
            for key in keys]
    verdicts, targets, issues, notes = [], [], list(failures), []
    for number, measured in enumerate(rounds, 1):
        for key, r in measured.items():
            where = f"{names[key]}" + (f" (round {number})" if len(rounds) > 1 else "")
            issues += [f"{where}: {p}" for p in problems(r, args.connections)]
            if r["other_cpu"] > NOISE_CORES:
                notes.append(f"{where}: other processes used {r['other_cpu']:.2f} cores during "
                             "the run: the machine was busy, these figures are pessimistic.")
    for key in ("sqlite", "postgres"):
        if key not in per_round:
            continue
        ratio = report.median([x[0] for x in per_round[key]])
        p99 = report.median([r["p99_us"] for r in runs[key]]) / 1000
        verdicts.append(ratio >= TARGET_RATIO and p99 < TARGET_P99_MS)
        each = ", ".join(f"{x[0]:.2f}" for x in per_round[key])
        targets.append(
            f"{names[key]}: throughput {ratio:.2f} × its ceiling "
            f"({'≥' if ratio >= TARGET_RATIO else '<'} {TARGET_RATIO}"
            + (f"; rounds: {each}" if len(per_round[key]) > 1 else "") + f"), p99 {p99:.1f} ms "
            f"({'<' if p99 < TARGET_P99_MS else '≥'} {TARGET_P99_MS:.0f} ms): "
            f"{'PASS' if verdicts[-1] else 'FAIL'}; in CPU per request "
            f"{report.median([x[2] for x in per_round[key]]):.2f} × its ceiling.")
    for database, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        ceiling, middle, real = (runs.get(f"{kind}{database}")
                                 for kind in ("ceiling-", "statements-", ""))
        if ceiling and middle and real:
            c, m, r = (report.median([report.cpu_ms(x) for x in runs_])
                       for runs_ in (ceiling, middle, real))
            targets.append(
                f"Where the gap goes, {label} (server CPU per request, medians): ceiling "
                f"{c:.2f} ms; with the real step's statements instead of its one INSERT "
                f"{m:.2f} ms ({m - c:+.2f}: the database and its driver); real step {r:.2f} ms "
                f"({r - m:+.2f}: the app's Python — Flask hooks, flow, TwiML, the records' "
                f"values). In CPU, the statements alone are {c / m:.2f} × the ceiling.")
    if "bare" in runs:
        notes.append("wrk shares the machine's cores: it used "
                     f"{report.median([r['wrk_cpu'] for r in runs['bare']]):.2f} cores during the "
                     "bare run and about 0.05 during the others, so the bare figure is a lower "
                     "bound.")
    if "postgres" in runs or "ceiling-postgres" in runs:
        notes.append("Server CPU of the PostgreSQL runs includes the PostgreSQL processes.")
    setup = [
        f"gunicorn {' '.join(options)} for every server, bound to 127.0.0.1, no gunicorn access "
        "log. The real app as deployed: every Twilio signature checked (TWILIO_AUTH_TOKEN and "
        "PUBLIC_BASE_URL set), its JSON access line per request at INFO (written to the "
        "server's log file) and its Prometheus metrics in multi-process mode.",
        "Ceiling (`bench/ceiling.py`): a bare Flask endpoint, none of the app's code, that "
        "checks the signature with the twilio library's RequestValidator (the app's HMAC-SHA1) "
        "and commits one INSERT of the call into the same database's `calls` table (SQLite with "
        "the app's WAL and synchronous=NORMAL), then answers the bare endpoint's TwiML. The real "
        "step is judged against the ceiling on its own database, measured in the same round.",
        "Ceiling + the real step's statements (`bench/statements.py`, a diagnostic, not judged): "
        "the ceiling's endpoint running, instead of its INSERT, the real step's read (returning "
        "caller and directory version, one statement) and write (the call and its event, one "
        "statement) with the app's own code: what the database part of the step costs alone.",
        f"Why: {WORKER_CHOICE}" if args.workers == 2 and args.threads == 1 else
        "Why: worker options given on the command line.",
        f"Load: wrk, {args.wrk_threads} thread{'s' if args.wrk_threads > 1 else ''}, "
        f"{args.connections} connections, "
        f"{args.duration} s after {args.warmup} s of warm-up, on the same machine; every request "
        f"is a distinct signed POST /ivr/voice (new CallSid) from {args.callers} callers "
        "(3 % hidden numbers).",
        f"Database: fresh, migrated and seeded by `flask --app app setup`, plus {args.history} "
        "past calls" + (f" ({returning:.0%} of the callers are offered their last département)"
                        if returning is not None else "") + "; PostgreSQL is a throwaway "
        "cluster with fsync=off (a best case for both its servers).",
        "Figures: " + (f"median of {len(rounds)} rounds" if len(rounds) > 1 else "one round")
        + "; each ratio is computed within a round, then its median taken. CPU/request: the "
        "server's CPU time (workers, and PostgreSQL's processes) per answered request, the "
        "least noisy figure on a shared machine; × ceiling (CPU) is the ceiling's CPU per "
        "request over the server's: the throughput ratio the two would have on cores of their "
        "own, since both are CPU-bound. The verdict is on throughput, as the target says.",
    ]
    if issues:
        status, word = 2, "DOUBTFUL (see checks)"
    elif not verdicts:
        status, word = 0, "NOT JUDGED (needs a ceiling and a real run on the same database)"
        targets = ["not judged: a ceiling run and a real run on the same database are needed."]
    else:
        status, word = (0, "PASS") if all(verdicts) else (1, "FAIL")
    checks = issues or ["no non-200 response, no socket error, no error logged, one call (and, "
                        "for the real step, one event) stored per answered request (± requests "
                        "in flight at the end)."]
    goal = f"real step ≥ {TARGET_RATIO} × its ceiling, p99 < {TARGET_P99_MS:.0f} ms"
    text = ["Machine", *(f"  {k}: {v}" for k, v in machine.items()), "", "Set-up",
            *(f"  {s}" for s in setup), "", report.text_table(rows), "", f"Targets: {goal}",
            *(f"  {t}" for t in targets), "", "Checks",
            *(f"  {c}" for c in checks + notes), "",
            f"Verdict: {word} (benchmark took {elapsed:.0f} s)"]
    md = ["# SVI benchmark: incoming call vs its ceiling and bare Flask", "", "## Machine", "",
          *(f"- **{k}**: {v}" for k, v in machine.items()), "", "## Set-up", "",
          *(f"- {s}" for s in setup), "", "## Results", "", report.markdown_table(rows), "",
          f"## Targets ({goal})", "", *(f"- {t}" for t in targets), "",
          "## Checks", "",
          *(f"- {c}" for c in checks + notes), "",
          f"**Verdict: {word}** (benchmark took {elapsed:.0f} s)", ""]
    return "\n".join(text), "\n".join(md), status


if __name__ == "__main__":
    sys.exit(main())
