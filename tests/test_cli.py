"""Command line: setup, directory status, and `call` in-process and against a running server."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app import create_app
from core import db
from core.db import make_engine
from directory.operations import get_departement, set_lines
from tracking.models import Call

ROOT = Path(__file__).resolve().parent.parent


def _fresh_app(tmp_path, **extra):
    return create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", **extra})


def test_setup_then_status_and_in_process_call(tmp_path):
    app = _fresh_app(tmp_path)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["setup"])
    assert result.exit_code == 0, result.output
    assert "101 département(s) créé(s)" in result.output
    assert "lignes fictives pour 75, 93, 2A, 57, 974" in result.output
    again = runner.invoke(args=["setup"])  # idempotent: nothing created twice, demo not reloaded
    assert "0 département(s) créé(s)" in again.output and "démonstration" not in again.output

    result = runner.invoke(args=["directory", "status", "57", "--at", "2026-12-26T10:00"])
    assert result.exit_code == 0, result.output
    assert "fermé : jour férié (Saint-Étienne)" in result.output
    assert "prochaine ouverture : lundi 28 décembre à 9 heures 30" in result.output
    result = runner.invoke(args=["directory", "status", "99"])
    assert result.exit_code != 0 and "département inconnu : 99" in result.output
    result = runner.invoke(args=["directory", "status", "75", "--at", "2026-02-30T10:00"])
    assert result.exit_code == 2 and "instant invalide : « 2026-02-30T10:00 »" in result.output

    result = runner.invoke(args=["call", "--from", "+33612345678", "--keys", "93",
                                 "--at", "2026-12-21T10:00"])
    assert result.exit_code == 0, result.output
    assert "☎ appel de +33199009301" in result.output
    assert "issue enregistrée : décroché — département 93" in result.output

    result = runner.invoke(args=["call", "--keys", "75", "--at", "2026-12-19T10:00"])
    assert "actuellement fermée" in result.output and "issue enregistrée : hors horaires" in result.output


def test_worked_holiday_command(tmp_path):
    app = _fresh_app(tmp_path)
    runner = app.test_cli_runner()
    runner.invoke(args=["setup", "--no-demo"])
    runner.invoke(args=["directory", "worked-holiday", "Lundi de Pentecôte"])
    with app.app_context():
        set_lines(db.session(), get_departement(db.session(), "75"), [("01 99 00 75 01", None)])
        db.commit()
    result = runner.invoke(args=["directory", "status", "75", "--at", "2026-05-25T10:00"])
    assert "ouvert : +33199007501" in result.output
    runner.invoke(args=["directory", "worked-holiday", "Lundi de Pentecôte", "--remove"])
    result = runner.invoke(args=["directory", "status", "75", "--at", "2026-05-25T10:00"])
    assert "fermé : jour férié (Lundi de Pentecôte)" in result.output


def test_a_departement_keeps_off_a_holiday_worked_nationally(tmp_path):
    app = _fresh_app(tmp_path)
    runner = app.test_cli_runner()
    runner.invoke(args=["setup", "--no-demo"])
    with app.app_context():
        for code, number in (("75", "01 99 00 75 01"), ("57", "03 99 00 57 01")):
            set_lines(db.session(), get_departement(db.session(), code), [(number, None)])
        db.commit()

    def status(code):
        return runner.invoke(args=["directory", "status", code, "--at", "2026-05-25T10:00"]).output

    # Accents and case aside, the name is stored as the library spells it.
    result = runner.invoke(args=["directory", "worked-holiday", "lundi de pentecote"])
    assert result.exit_code == 0 and "Lundi de Pentecôte : travaillé (tous les départements)" in result.output
    result = runner.invoke(args=["directory", "worked-holiday", "Lundi de Pentecôte",
                                 "--departement", "57", "--remove"])
    assert "Lundi de Pentecôte : chômé (département 57)" in result.output
    assert "fermé : jour férié (Lundi de Pentecôte)" in status("57")
    assert "ouvert" in status("75")
    runner.invoke(args=["directory", "worked-holiday", "Lundi de Pentecôte", "--departement", "57",
                        "--reset"])
    assert "ouvert" in status("57")

    for args, message in (
            (["Lundi de Pentcôte"], "« Lundi de Pentcôte » n'est pas un jour férié français"),
            (["Saint-Étienne", "--departement", "75"],
             "« Saint-Étienne » n'est pas un jour férié du département 75"),
            (["Lundi de Pentecôte", "--departement", "99"], "département inconnu : « 99 »"),
            (["Lundi de Pentecôte", "--reset"], "--reset ne vaut que pour un département")):
        result = runner.invoke(args=["directory", "worked-holiday", *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    assert "ouvert" in status("75")  # nothing written by the refused commands


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_server(tmp_path):
    """The service as `make run` starts it: migrate + seed, then the web server, on SQLite."""
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'run.sqlite3'}",
               TWILIO_AUTH_TOKEN="a-real-looking-token", SVI_ALLOW_SIMULATED_TIME="1",
               PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", LOG_LEVEL="WARNING")
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run(flask + ["setup"], cwd=ROOT, env=env, check=True, capture_output=True)
    server = subprocess.Popen(flask + ["run", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield port, env, flask
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_call_command_against_a_running_server(running_server):
    port, env, flask = running_server
    out = subprocess.run(flask + ["call", "--url", f"http://127.0.0.1:{port}", "--keys", "93,1,2",
                                  "--at", "2026-12-21T10:00"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Vous avez choisi le département 93, Seine-Saint-Denis" in out.stdout
    assert "issue enregistrée : décroché — département 93, thématique usage" in out.stdout

    # A second run is a second call (a new CallSid), from a returning caller, ended when it
    # was simulated to end.
    again = subprocess.run(flask + ["call", "--url", f"http://127.0.0.1:{port}", "--keys", "1,1,2",
                                    "--at", "2026-12-21T10:05"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "département 93" in again.stdout and "issue enregistrée : décroché" in again.stdout
    engine = make_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            calls = conn.execute(select(Call.started_at, Call.ended_at).order_by(Call.id)).all()
    finally:
        engine.dispose()
    assert len(calls) == 2
    assert all(start <= end < start + timedelta(hours=1) for start, end in calls)

    for args, message in ((["--at", "2026-13-45"], "instant invalide : « 2026-13-45 »"),
                          (["--keys", "9a,x"], "touches invalides : 9a, x"),
                          (["--url", "127.0.0.1:5077"], "adresse attendue"),
                          (["--url", f"http://127.0.0.1:{_free_port()}"], "serveur injoignable")):
        if "--url" not in args:
            args = [*args, "--url", f"http://127.0.0.1:{port}"]
        bad = subprocess.run(flask + ["call", *args], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr, \
            (args, bad.stderr)

    # Unsigned requests are refused by the running server.
    req = urllib.request.Request(f"http://127.0.0.1:{port}/ivr/voice", data=b"CallSid=CA1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 403
