"""Servers under test: gunicorn processes and the databases behind the real app."""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select

from bench.load import AUTH_TOKEN, NATIONAL_NUMBER, PUBLIC_BASE_URL
from core import settings
from core.db import utcnow
from core.privacy import caller_hash, mask_number

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-secret-key"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its children."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def app_env(database_url: str) -> dict[str, str]:
    """Environment of the real app: every SVI setting reset, signatures checked, quiet logs."""
    env = {k: v for k, v in os.environ.items() if k not in settings.DEFAULTS}
    env.update(DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY, CALLER_HASH_KEY=SECRET_KEY,
               TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL=PUBLIC_BASE_URL,
               LOG_LEVEL="WARNING")
    return env


def production_observability(env: dict[str, str], metrics: Path) -> dict[str, str]:
    """`env` with the app's production logs and metrics: one JSON access line per request at
    INFO (to the server's log file), Prometheus in multi-process mode in `metrics`, as
    deploy/gunicorn.conf.py runs them."""
    metrics.mkdir(parents=True, exist_ok=True)
    return env | {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json",
                  "PROMETHEUS_MULTIPROC_DIR": str(metrics)}


def setup_database(database_url: str) -> None:
    """Migrate and seed a fresh database with `flask --app app setup`."""
    run = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "setup"], cwd=ROOT,
                         env=app_env(database_url), capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise RuntimeError(f"flask setup failed:\n{run.stdout}{run.stderr}")


def seed_history(database_url: str, callers: list[str], count: int, rng: random.Random) -> float:
    """Insert `count` past calls (last 120 days) from a third of `callers`; return the share of
    all callers who will be offered their last département (a call in the last 90 days)."""
    from directory.models import Departement
    from tracking.models import Call
    engine = create_engine(database_url)
    now, returning, known = utcnow(), set(), callers[::3]
    try:
        with engine.begin() as conn:
            codes = list(conn.scalars(select(Departement.code)))
            rows = []
            for i in range(count):
                caller, age = rng.choice(known), timedelta(minutes=rng.randrange(120 * 24 * 60))
                code = rng.choice(codes) if rng.random() < 0.8 else None
                if code and age < timedelta(days=89):
                    returning.add(caller)
                rows.append({"call_sid": f"CAff{i:030x}", "caller_masked": mask_number(caller),
                             "caller_hash": caller_hash(caller, SECRET_KEY),
                             "called_number": NATIONAL_NUMBER, "status": "completed",
                             "started_at": now - age, "updated_at": now - age,
                             "departement_code": code, "step": "dial" if code else "departement"})
            conn.execute(insert(Call), rows)
    finally:
        engine.dispose()
    return len(returning) / len(callers)


def count_rows(database_url: str) -> tuple[int, int]:
    """(calls, call events) currently stored."""
    from tracking.models import Call, CallEvent
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return (conn.scalar(select(func.count()).select_from(Call)),
                    conn.scalar(select(func.count()).select_from(CallEvent)))
    finally:
        engine.dispose()


@contextmanager
def postgres():
    """A throwaway PostgreSQL cluster with one empty database; yields (URL, postmaster pid)."""
    from devtools.pgcluster import Cluster
    cluster = Cluster(free_port()).start()
    try:
        pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        yield cluster.create_database("svi_bench"), pid
    finally:
        cluster.stop()


class Gunicorn:
    """One gunicorn master on 127.0.0.1 with its workers, logging to `log`."""

    #: Servers started and not yet stopped, for a last-resort clean-up.
    running: set[Gunicorn] = set()

    def __init__(self, app: str, env: dict[str, str], options: list[str], log: Path):
        self.app, self.env, self.options, self.log = app, env, options, log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.stopped = False

    def __enter__(self) -> "Gunicorn":
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                 "--log-level", "warning", "--timeout", "30", "--graceful-timeout", "5",
                 *self.options, self.app],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        Gunicorn.running.add(self)
        try:
            self._wait_ready(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.proc.returncode}):\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and len(self.workers()) >= self.worker_count():
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout}s:\n{self.log_tail()}")

    def worker_count(self) -> int:
        """Workers asked for on the command line."""
        opts = self.options
        return int(opts[opts.index("--workers") + 1]) if "--workers" in opts else 1

    def workers(self) -> list[int]:
        """Process ids of the master's children."""
        return children(self.proc.pid)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the master and its workers."""
        return tree_cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def logged_errors(self) -> int:
        """Lines of the server log at ERROR level or above (app or gunicorn), and tracebacks."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        marks = (" ERROR ", " CRITICAL ", "[ERROR]", "[CRITICAL]", "Traceback",
                 '"level":"ERROR"', '"level":"CRITICAL"')  # the app's JSON lines
        return sum(1 for line in text.splitlines() if any(m in line for m in marks))

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL of the server's own process group."""
        if self.proc is None or self.stopped:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.stopped = True
        Gunicorn.running.discard(self)
