"""`python -m bench.soak` (`make soak`): two app instances on one PostgreSQL for ten minutes.

Two gunicorn servers started with the deployment's own settings (deploy/gunicorn.conf.py,
2 workers each), the scheduler process beside them, one throwaway PostgreSQL cluster and one
journal folder (one host). For the duration (`SOAK_SECONDS`, default 600):
- steady calls placed as Twilio places them (`bench/callers.py`): signed webhooks, the TwiML
  followed, the legs' and the call's status callbacks, each request to either server;
- web traffic: a referent logged in through the login form browsing « Mes appels », a call's
  page and the dashboard of its départements, an admin opening the directory, a département's
  page and the national dashboard, each on either server.
The resident memory (RSS) of every worker, master and of the scheduler is sampled every 10 s.

Then it checks: no 5xx (nor any other error status) anywhere, every call placed stored exactly
once with the outcome, legs and events of its scenario, no journal left; and memory flat: the
growth of each worker from the first minute to the last (mean RSS of the samples of each) is
judged against a bound. A Markdown report (machine, figures, verdict) is printed and written to
bench/results/soak.md. Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from bench import report
from bench.callers import (SCENARIOS, Twilio, call_problems, expected_dials, open_all_day,
                           run_load, stored_calls, twiml_problems)
from bench.load import AUTH_TOKEN, PUBLIC_BASE_URL
from bench.servers import ROOT, Gunicorn, app_env, postgres

RESULTS = Path(__file__).with_name("results")
#: Départements the callers ask for, open all day while the soak runs.
OPEN = ("75", "93", "57", "2A")
WEIGHTS = {"answered-75": 4, "voicemail-93": 2, "callback-93": 1, "menu-hangup": 1,
           "ringing-hangup-57": 1, "answered-2A": 2, "no-assistance-974": 1}
ADMIN, REFERENT = "admin@soak.example.gouv.fr", "referent@soak.example.gouv.fr"
PASSWORD = "un mot de passe de charge assez long"
_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                    r'name="csrf_token" value="([^"]+)"')
_CALL_LINK = re.compile(r'href="(/appels/S-[0-9A-Z]+)"')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "600")),
                   help="duration of the load (default: SOAK_SECONDS, else 600)")
    p.add_argument("--rate", type=float, default=3.0, help="calls placed per second")
    p.add_argument("--pages-per-second", type=float, default=2.0,
                   help="web pages requested per second, by the referent and the admin in turn")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--max-growth-mb", type=float, default=10.0,
                   help="largest RSS growth of a worker, first minute to last (MB)")
    p.add_argument("--output", type=Path, default=RESULTS / "soak.md")
    return p.parse_args(argv)


# -- web users ----------------------------------------------------------------------------------
class WebUser:
    """A browser of one account: logs in through the form, then requests pages from either
    server (the session cookie is valid on both: same secret key)."""

    def __init__(self, email: str, servers: list[str], rng: random.Random):
        self.email, self.servers, self.rng = email, servers, rng
        self.http = requests.Session()
        #: (path, status, seconds) of every page requested.
        self.pages: list[tuple[str, int, float]] = []

    def _cookies_over_http(self) -> None:
        # The session cookie is Secure (PUBLIC_BASE_URL is https): the TLS proxy is left out
        # here, so the browser would get it over https and send it to the app over http.
        for cookie in self.http.cookies:
            cookie.secure = False

    def get(self, path: str) -> requests.Response:
        started = time.monotonic()
        response = self.http.get(self.rng.choice(self.servers) + path, timeout=30,
                                 allow_redirects=False)
        self.pages.append((path, response.status_code, time.monotonic() - started))
        self._cookies_over_http()
        return response

    def login(self) -> None:
        server = self.rng.choice(self.servers)
        page = self.http.get(server + "/connexion", timeout=30)
        self._cookies_over_http()
        match = _TOKEN.search(page.text)
        if page.status_code != 200 or match is None:
            raise RuntimeError(f"login page of {server}: HTTP {page.status_code}")
        done = self.http.post(server + "/connexion", timeout=30, allow_redirects=False,
                              data={"email": self.email, "password": PASSWORD,
                                    "csrf_token": match.group(1) or match.group(2)})
        self._cookies_over_http()
        if done.status_code != 302:
            raise RuntimeError(f"login of {self.email}: HTTP {done.status_code}")


def referent_visit(user: WebUser) -> None:
    """« Mes appels », one of its calls, the dashboard of the referent's départements."""
    listing = user.get("/appels/")
    links = _CALL_LINK.findall(listing.text) if listing.status_code == 200 else []
    if links:
        user.get(user.rng.choice(links[:20]))
    user.get("/tableau-de-bord/mes-departements")


def admin_visit(user: WebUser) -> None:
    """The directory, one of the callers' départements, the national dashboard."""
    user.get("/annuaire/")
    user.get(f"/annuaire/{user.rng.choice(OPEN)}")
    user.get("/tableau-de-bord/")


def browse(users: list[tuple[WebUser, callable]], per_second: float, stop: threading.Event,
           errors: list[str]) -> None:
    """Visits in turn until `stop`, about `per_second` pages a second."""
    turn = 0
    while not stop.is_set():
        user, visit = users[turn % len(users)]
        turn += 1
        try:
            visit(user)
        except requests.RequestException as exc:
            errors.append(f"{user.email}: {exc!r}")
        stop.wait(3 / per_second)


def make_accounts(url: str) -> None:
    """The admin (created by `flask setup` from ADMIN_EMAIL/ADMIN_PASSWORD) and a referent of
    the départements the callers ask for most."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from accounts import operations
    from accounts.models import Role
    from audit.operations import Actor
    engine = create_engine(url)
    try:
        with Session(engine) as db:
            operations.create(db, Actor.cli(), email=REFERENT, role=Role.referent,
                              name="Référent de charge", departements=["75", "93"],
                              password=PASSWORD)
            db.commit()
    finally:
        engine.dispose()


# -- memory -------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """RSS of every process of interest every `period` seconds: (elapsed, name, pid, MB)."""

    def __init__(self, processes, period: float):
        super().__init__(name="rss-sampler", daemon=True)
        self.processes, self.period = processes, period
        self.samples: list[tuple[float, str, int, float]] = []
        self.stop, self.started = threading.Event(), time.monotonic()

    def run(self) -> None:
        while True:
            elapsed = time.monotonic() - self.started
            for name, pid in self.processes():
                mb = rss_mb(pid)
                if mb is not None:
                    self.samples.append((elapsed, name, pid, mb))
            if self.stop.wait(self.period):
                return


MEMORY_COLUMNS = ("Process", "pid", "First minute", "Middle minute", "Last minute",
                  "Growth", "of which 2nd half", "Peak", "Verdict")


def memory_table(samples, seconds: float, bound: float) -> tuple[list[tuple], list[str]]:
    """Per process: mean RSS of the first, middle and last minutes' samples, the growth from
    the first minute to the last (judged for workers) and over the second half, the peak;
    the problems found."""
    rows, problems = [], []
    by_process: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for elapsed, name, pid, mb in samples:
        by_process.setdefault((name, pid), []).append((elapsed, mb))
    for (name, pid), points in sorted(by_process.items()):
        first = [mb for t, mb in points if t < 60]
        middle = [mb for t, mb in points if abs(t - seconds / 2) < 30]
        last = [mb for t, mb in points if t >= seconds - 60]
        peak = f"{max(mb for _, mb in points):.1f}"
        if not first or not last:
            rows.append((name, str(pid), "—", "—", "—", "—", "—", peak,
                         "not there from start to end"))
            if name.startswith("worker"):
                problems.append(f"{name} (pid {pid}) did not live through the soak")
            continue
        growth = statistics.mean(last) - statistics.mean(first)
        late = statistics.mean(last) - statistics.mean(middle) if middle else float("nan")
        judged = name.startswith("worker")
        verdict = ("PASS" if growth <= bound else "FAIL") if judged else "measured"
        if judged and growth > bound:
            problems.append(f"{name} (pid {pid}) grew by {growth:.1f} MB (bound {bound:g} MB)")
        rows.append((name, str(pid), f"{statistics.mean(first):.1f}",
                     f"{statistics.mean(middle):.1f}" if middle else "—",
                     f"{statistics.mean(last):.1f}", f"{growth:+.1f}", f"{late:+.1f}", peak,
                     verdict))
    return rows, problems


# -- figures ------------------------------------------------------------------------------------
def md_table(rows: list[tuple]) -> str:
    """Rows as a Markdown table, the first one the header; numbers right-aligned."""
    head, *body = rows
    rule = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(head))) + "|"
    return "\n".join(["| " + " | ".join(head) + " |", rule,
                      *("| " + " | ".join(r) + " |" for r in body)])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def latency_row(name: str, seconds: list[float], statuses: list[int]) -> tuple:
    errors = sum(1 for s in statuses if s >= 500)
    others = sum(1 for s in statuses if s not in (200, 302) and s < 500)
    return (name, f"{len(seconds):,}", f"{percentile(seconds, 0.5) * 1000:.1f}",
            f"{percentile(seconds, 0.99) * 1000:.1f}", f"{max(seconds, default=0) * 1000:.0f}",
            str(errors), str(others))


def wait_until_recorded(url: str, sids: set[str], journal: Path, timeout: float = 120):
    """The stored calls once every call is stored and no journal waits (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_calls(url, sids)
        waiting = [p for p in journal.glob("*.jsonl") if p.name != "rejected.jsonl"
                   and p.stat().st_size]
        if (set(stored) == sids and not waiting) or time.monotonic() > deadline:
            return stored, waiting
        time.sleep(2)


def main(argv=None) -> int:
    args = parse_args(argv)
    machine = report.machine()
    machine["Software"] = machine["Software"].rsplit(", wrk", 1)[0].rsplit(", absent", 1)[0]
    rng = random.Random(2026)
    started_at = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="svi-soak-") as tmp_name, postgres() as (url, _pg):
        tmp = Path(tmp_name)
        env = app_env(url)
        env.pop("FLASK_RUN_FROM_CLI", None)  # web processes replay dead ones' journals at start
        env.update(JOURNAL_DIR=str(tmp / "journal"), MAIL_OUTBOX_DIR=str(tmp / "outbox"),
                   WORKBOOK_STORAGE_DIR=str(tmp / "workbooks"), ADMIN_EMAIL=ADMIN,
                   ADMIN_PASSWORD=PASSWORD, LOG_LEVEL="WARNING", LOG_FORMAT="text")
        print(f"soak: database set up ({url.split('?')[0]})", flush=True)
        setup_run = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "setup"],
                                   cwd=ROOT, env=env, capture_output=True, text=True,
                                   timeout=180)
        if setup_run.returncode != 0:
            raise RuntimeError(f"flask setup failed:\n{setup_run.stdout}{setup_run.stderr}")
        open_all_day(url, OPEN, days=2)
        make_accounts(url)
        dials = expected_dials(url)

        def server_env(name: str) -> dict[str, str]:
            own = dict(env, PROMETHEUS_MULTIPROC_DIR=str(tmp / f"metrics-{name}"),
                       INSTANCE_NAME=f"soak-{name}")
            return own

        options = ["--config", str(ROOT / "deploy" / "gunicorn.conf.py"), "--workers", "2"]
        scheduler_log = (tmp / "scheduler.log").open("w")
        scheduler = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "scheduler"],
                                     cwd=ROOT, env=env, stdout=scheduler_log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with Gunicorn("app:create_app()", server_env("a"), options, tmp / "a.log") as a, \
                    Gunicorn("app:create_app()", server_env("b"), options, tmp / "b.log") as b:
                servers = [f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}"]
                masters = {"master a": a.proc.pid, "master b": b.proc.pid}

                def processes():
                    found = [(name, pid) for name, pid in masters.items()]
                    for label, server in (("a", a), ("b", b)):
                        for i, pid in enumerate(sorted(server.workers())):
                            found.append((f"worker {label}{i + 1}", pid))
                    found.append(("scheduler", scheduler.pid))
                    return found

                referent, admin = (WebUser(REFERENT, servers, random.Random(1)),
                                   WebUser(ADMIN, servers, random.Random(2)))
                referent.login()
                admin.login()
                twilio = Twilio(servers, auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE_URL,
                                rng=rng)
                sampler = Sampler(processes, args.sample)
                stop, web_errors = threading.Event(), []
                web = threading.Thread(target=browse, name="web", daemon=True, args=(
                    [(referent, referent_visit), (admin, admin_visit)], args.pages_per_second,
                    stop, web_errors))
                print(f"soak: {args.seconds} s of load on {servers} (scheduler pid "
                      f"{scheduler.pid})", flush=True)
                sampler.start()
                web.start()
                names = list(WEIGHTS)
                placed = run_load(twilio, seconds=args.seconds, rate=args.rate,
                                  choose=lambda _e: SCENARIOS[rng.choices(
                                      names, [WEIGHTS[n] for n in names])[0]])
                stop.set()
                web.join(timeout=60)
                sampler.stop.set()
                sampler.join(timeout=30)
                loaded_for = time.monotonic() - sampler.started
                sids = {p.transcript.call_sid for p in placed}
                stored, waiting = wait_until_recorded(url, sids, tmp / "journal")
                logs = {"a": a.logged_errors(), "b": b.logged_errors()}
        finally:
            scheduler.terminate()
            try:
                scheduler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                scheduler.kill()
            scheduler_log.close()
        rejected = tmp / "journal" / "rejected.jsonl"
        rejected_lines = len(rejected.read_text().splitlines()) if rejected.exists() else 0

    # -- checks and report
    problems = []
    bad_twiml = twiml_problems(twilio)
    problems += [f"webhook: {p}" for p in bad_twiml[:10]]
    if twilio.cut:
        problems.append(f"{len(twilio.cut)} webhook(s) failed at the connection")
    call_issues = [issue for p in placed
                   for issue in call_problems(p, stored.get(p.transcript.call_sid), dials)]
    problems += call_issues[:20]
    extra = set(stored) - sids
    if extra:
        problems.append(f"{len(extra)} call(s) in the database that nobody placed")
    if waiting:
        problems.append(f"journals still waiting: {[p.name for p in waiting]}")
    if rejected_lines:
        problems.append(f"{rejected_lines} record(s) set aside in rejected.jsonl")
    pages = referent.pages + admin.pages
    web_5xx = [(path, status) for path, status, _ in pages if status >= 500]
    web_other = [(path, status) for path, status, _ in pages if status not in (200, 302)
                 and status < 500]
    problems += [f"web: HTTP {status} on {path}" for path, status in (web_5xx + web_other)[:10]]
    problems += [f"web: {e}" for e in web_errors[:10]]
    if any(logs.values()):
        problems.append(f"errors logged by the servers: {logs}")
    memory_rows, memory_problems = memory_table(sampler.samples, loaded_for, args.max_growth_mb)
    problems += memory_problems

    webhook_seconds = [s for *_, s in twilio.answers]
    webhook_statuses = [status for _, _, status, _, _ in twilio.answers]
    by_kind: dict[str, list] = {}
    for _sid, url_, status, _body, seconds in twilio.answers:
        path = url_.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
        by_kind.setdefault("/" + path, []).append((seconds, status))
    traffic = [("Webhook", "Requests", "p50 (ms)", "p99 (ms)", "Max (ms)", "5xx", "Other errors"),
               latency_row("All webhooks", webhook_seconds, webhook_statuses)]
    for path, values in sorted(by_kind.items()):
        traffic.append(latency_row(path, [s for s, _ in values], [st for _, st in values]))
    page_rows = [("Page", "Requests", "p50 (ms)", "p99 (ms)", "Max (ms)", "5xx", "Other errors")]
    by_page: dict[str, list] = {}
    for path, status, seconds in pages:
        key = "/appels/<référence>" if re.fullmatch(r"/appels/[^/]+", path) else (
            "/annuaire/<code>" if re.fullmatch(r"/annuaire/[^/]+", path) else path)
        by_page.setdefault(key, []).append((seconds, status))
    for path, values in sorted(by_page.items()):
        page_rows.append(latency_row(path, [s for s, _ in values], [st for _, st in values]))
    outcomes: dict[str, int] = {}
    for p in placed:
        outcomes[p.scenario.name] = outcomes.get(p.scenario.name, 0) + 1
    verdict = "PASS" if not problems else "FAIL"
    lines = [
        "# Soak: two instances, one PostgreSQL", "",
        f"Run on {started_at:%Y-%m-%d %H:%M} UTC, `python -m bench.soak --seconds {args.seconds}`"
        f" (rate {args.rate:g} calls/s, about {args.pages_per_second:g} pages/s, RSS every "
        f"{args.sample:g} s, bound {args.max_growth_mb:g} MB per worker).", "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        f"- Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "- Servers: 2 × gunicorn with deploy/gunicorn.conf.py (gthread, 2 workers each), the "
        "scheduler process, one throwaway PostgreSQL cluster (fsync off), one journal folder.",
        "",
        f"**{verdict}** — {len(placed):,} calls placed in {loaded_for:.0f} s "
        f"({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))}), "
        f"{len(twilio.answers):,} webhooks, {len(pages):,} web pages; "
        f"{len(set(stored) & sids):,} calls stored exactly once as placed, "
        f"{len(call_issues)} call problem(s); {len(web_5xx) + sum(1 for s in webhook_statuses if s >= 500)} "
        f"answer(s) 5xx; journal left: {len(waiting)} file(s), rejected: {rejected_lines}.", "",
        "## Traffic (latency seen by the client, loopback)", "",
        md_table(traffic), "", md_table(page_rows), "",
        "## Memory (RSS, MB): mean of the samples of the first, middle and last minutes", "",
        md_table([MEMORY_COLUMNS] + memory_rows), "",
    ]
    if problems:
        lines += ["## Problems", "", *(f"- {p}" for p in problems), ""]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
