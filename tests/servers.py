"""The real app under gunicorn with deploy/gunicorn.conf.py, for the tests of the production
set-up (metrics across workers, logs, two instances on one database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from bench.servers import Gunicorn
from core import settings
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "gunicorn.conf.py"
#: A Monday at 10:00 in Paris: the demo lines are open (SVI_ALLOW_SIMULATED_TIME is on).
OPEN = "2026-12-21T10:00"


def app_env(database_url: str, folder: Path, **extra: str) -> dict[str, str]:
    """Environment of an instance: every SVI setting reset, then the test's."""
    env = {k: v for k, v in os.environ.items()
           if k not in settings.DEFAULTS and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(DATABASE_URL=database_url, SECRET_KEY="serve-secret", TWILIO_AUTH_TOKEN=AUTH_TOKEN,
               PUBLIC_BASE_URL=PUBLIC_BASE, SVI_CALLER_ID="+33806000156", LOG_LEVEL="INFO",
               LOG_FORMAT="json", SVI_ALLOW_SIMULATED_TIME="1",
               JOURNAL_DIR=str(folder / "journal"), MAIL_OUTBOX_DIR=str(folder / "outbox"),
               WORKBOOK_STORAGE_DIR=str(folder / "workbooks"))
    env.update(extra)
    return env


def flask(env: dict[str, str], *args: str) -> str:
    """Run a `flask --app app` command; its output."""
    run = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def gunicorn(env: dict[str, str], log: Path, *, workers: int, name: str) -> Gunicorn:
    """A gunicorn server (not started: use it as a context manager) with the deploy/ config,
    its metrics in a folder of its own."""
    folder = log.parent / f"metrics-{name}"
    return Gunicorn("app:create_app()", {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder),
                                         "WEB_THREADS": "1"},
                    ["--config", str(CONF), "--workers", str(workers)], log)


def get(server: Gunicorn, path: str, headers: dict | None = None) -> tuple[int, str]:
    """GET a path of a running server."""
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def log_lines(server: Gunicorn) -> list[dict]:
    """Every line the server wrote, parsed as JSON (fails on a line that is not)."""
    lines = []
    for number, line in enumerate(server.log.read_text().splitlines(), start=1):
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{server.log.name}:{number} is not JSON: {line!r}") from None
    return lines
