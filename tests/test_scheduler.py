"""Scheduler: job locking across instances, the jobs, the command, and outgoing email over real SMTP."""

from __future__ import annotations

import email
import email.policy
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app import create_app
from core import mail, settings
from core.cli import upgrade
from scheduler import cli as scheduler_cli
from scheduler import jobs, runs
from scheduler.models import JobRun
from tests import factories, mailserver
from tests.conftest import PARIS
from tracking.models import Call, CallEvent, Channel

ROOT = Path(__file__).resolve().parent.parent
TEAM = ["pilotage@example.gouv.fr", "equipe.nationale@example.gouv.fr"]


# --- a real SMTP server on loopback ------------------------------------------------------------

@pytest.fixture
def smtp_server():
    with mailserver.running(authentication=True) as inbox:
        yield inbox


def _mail_config(**overrides) -> dict:
    return dict(settings.DEFAULTS, **overrides)


@pytest.fixture
def job_app(app, tmp_path, smtp_server):
    """The app with its storage under tmp_path and mail going to the loopback SMTP server."""
    app.config.update(WORKBOOK_STORAGE_DIR=str(tmp_path / "classeurs"),
                      MAIL_OUTBOX_DIR=str(tmp_path / "outbox"), SMTP_HOST="127.0.0.1",
                      SMTP_PORT=smtp_server.port, NATIONAL_TEAM_EMAILS=" , ".join(TEAM))
    return app


# --- email -------------------------------------------------------------------------------------

def test_mail_is_delivered_over_smtp_in_utf8(smtp_server, caplog):
    body = "Bonjour,\n\nLes classeurs du 4e trimestre sont prêts : à télécharger dès réception.\n"
    caplog.set_level(logging.INFO, logger="core.mail")
    mail.send(_mail_config(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
                           SMTP_USERNAME="svi", SMTP_PASSWORD="bon-mot-de-passe"),
              to=TEAM, subject="SVI – classeurs trimestriels", body=body)
    assert smtp_server.logins == [("svi", "bon-mot-de-passe")]
    [envelope] = smtp_server.envelopes
    assert envelope.mail_from == "svi-noreply@example.gouv.fr"
    assert envelope.rcpt_tos == TEAM
    [msg] = smtp_server.messages()
    assert msg["From"] == "svi-noreply@example.gouv.fr"
    assert msg["To"] == ", ".join(TEAM)
    assert msg["Subject"] == "SVI – classeurs trimestriels"
    assert msg["Message-ID"].endswith("@example.gouv.fr>") and msg["Date"]
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    assert msg.get_content() == body
    assert "télécharger" not in caplog.text and "2 destinataire(s)" in caplog.text


def test_mail_errors_are_clear_and_never_carry_the_body(smtp_server, caplog):
    body = "Appel du +33612345678 : données personnelles"
    closed = mailserver.free_port()
    with pytest.raises(mail.MailError, match=f"impossible via 127.0.0.1:{closed}") as err:
        mail.send(_mail_config(SMTP_HOST="127.0.0.1", SMTP_PORT=closed), to=TEAM, subject="Essai", body=body)
    assert "+33612345678" not in str(err.value)
    with pytest.raises(mail.MailError, match="SMTPAuthenticationError"):
        mail.send(_mail_config(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
                               SMTP_USERNAME="svi", SMTP_PASSWORD="mauvais"), to=TEAM, subject="Essai", body=body)
    with pytest.raises(mail.MailError, match="SMTPNotSupportedError"):  # the server offers no STARTTLS
        mail.send(_mail_config(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port, SMTP_STARTTLS=True),
                  to=TEAM, subject="Essai", body=body)
    with pytest.raises(mail.MailError, match="aucun destinataire"):
        mail.send(_mail_config(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port), to=[" "],
                  subject="Essai", body=body)
    assert smtp_server.envelopes == []
    assert "+33612345678" not in caplog.text


def test_mail_without_smtp_host_goes_to_the_outbox_folder(tmp_path, smtp_server):
    outbox = tmp_path / "outbox"
    mail.send(_mail_config(MAIL_OUTBOX_DIR=str(outbox), SMTP_PORT=smtp_server.port),
              to=TEAM[:1], subject="Écrit sur disque", body="Déposé, pas envoyé.\n")
    [path] = outbox.glob("*.eml")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["To"] == TEAM[0] and msg["Subject"] == "Écrit sur disque"
    assert msg.get_content() == "Déposé, pas envoyé.\n"
    assert smtp_server.envelopes == []


def test_outbox_defaults_to_the_instance_folder(tmp_path):
    assert mail.outbox_dir(_mail_config(), str(tmp_path)) == tmp_path / "outbox"
    assert mail.outbox_dir(_mail_config(MAIL_OUTBOX_DIR="/srv/courriels")) == Path("/srv/courriels")


def test_mail_settings_are_typed(tmp_path):
    cfg = settings.load(str(tmp_path), environ={"SMTP_PORT": "587", "SMTP_STARTTLS": "1", "SMTP_TIMEOUT": "30"})
    assert (cfg["SMTP_PORT"], cfg["SMTP_STARTTLS"], cfg["SMTP_TIMEOUT"]) == (587, True, 30)
    assert settings.load(str(tmp_path), environ={})["SMTP_STARTTLS"] is False


# --- locking -----------------------------------------------------------------------------------

def _race(apps, action):
    """Run `action(session)` in one thread per app at the same instant; return the results."""
    barrier = threading.Barrier(len(apps))
    results, errors = [None] * len(apps), []

    def worker(i, application):
        session = application.extensions["svi.sessionmaker"]()
        try:
            barrier.wait()
            results[i] = action(session)
        except Exception as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(apps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return results


@pytest.fixture
def two_instances(app):
    """The app and a second instance (its own engine and pool) on the same database."""
    other = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "SECRET_KEY": "test-secret"})
    yield [app, other] * 4
    other.extensions["svi.engine"].dispose()


def test_concurrent_claims_from_two_instances_have_one_winner(two_instances, db):
    results = _race(two_instances, lambda s: (r := runs.claim(s, "essai", "2026-Q4")) and r.id)
    winners = [r for r in results if r]
    assert len(winners) == 1
    [row] = db.scalars(select(JobRun)).all()
    assert (row.id, row.job, row.period, row.status) == (winners[0], "essai", "2026-Q4", "running")


def test_a_stale_running_claim_is_taken_over_by_exactly_one(two_instances, db):
    old = datetime.now(UTC) - timedelta(hours=7)
    db.add(JobRun(job="essai", period="2026-Q4", started_at=old, status="running", detail=""))
    db.commit()
    results = _race(two_instances, lambda s: (r := runs.claim(s, "essai", "2026-Q4")) and r.id)
    assert len([r for r in results if r]) == 1
    db.expire_all()
    [row] = db.scalars(select(JobRun)).all()
    assert row.status == "running" and row.started_at > old + timedelta(hours=6)


@pytest.mark.parametrize("status, age_hours, reclaimed", [
    ("running", 1, False),  # still running elsewhere
    ("done", 100, False),  # never twice
    ("failed", 1, True),  # a failed run may be run again
])
def test_claim_depends_on_the_existing_run(app, db, status, age_hours, reclaimed):
    db.add(JobRun(job="essai", period="2026-12-21", status=status, detail="avant",
                  started_at=datetime.now(UTC) - timedelta(hours=age_hours)))
    db.commit()
    run = runs.claim(db, "essai", "2026-12-21")
    assert (run is not None) == reclaimed
    db.rollback()
    [row] = db.scalars(select(JobRun)).all()
    assert row.status == ("running" if reclaimed else status)
    assert row.detail == ("" if reclaimed else "avant")


def test_claim_is_committed_at_once_and_finish_rides_with_the_work(app, db):
    run = runs.claim(db, "essai", "2026-Q4")
    db.rollback()  # the caller's transaction is discarded: the lock must survive
    assert runs.claim(db, "essai", "2026-Q4") is None
    runs.finish(db, run, "terminé")
    db.rollback()  # finish only flushed: nothing recorded until the job commits
    assert runs.get(db, "essai", "2026-Q4").status == "running"
    runs.finish(db, run, "terminé")
    db.commit()
    with app.extensions["svi.sessionmaker"]() as other:
        row = runs.get(other, "essai", "2026-Q4")
        assert (row.status, row.detail) == ("done", "terminé") and row.finished_at is not None


# --- caller purge ------------------------------------------------------------------------------

def _add_call(db, sid, started_at):
    return factories.call(db, sid=sid, caller=sid, started_at=started_at, departement=None,
                          events=1).id


def test_purge_job_anonymises_old_callers_once_a_day(job_app, db, clock):
    old = _add_call(db, "CA-ancien", clock.now - timedelta(days=400))
    recent = _add_call(db, "CA-recent", clock.now - timedelta(days=10))
    outcome = jobs.purge_callers(job_app)
    assert outcome == jobs.JobResult(
        "done", "purge-callers 2026-12-21 : 1 appel(s) anonymisé(s) (antérieurs au 21/12/2025)")
    calls = {c.id: c for c in db.scalars(select(Call))}
    assert (calls[old].caller_hash, calls[old].caller_masked) == (None, "purgé")
    assert calls[recent].caller_hash == "hash-CA-recent"
    assert {e.call_id: (e.kind, e.data) for e in db.scalars(select(CallEvent))} == {
        old: ("purged", {}), recent: ("step", {"From": "+336••••••78"})}
    row = db.scalars(select(JobRun)).one()
    assert (row.job, row.period, row.status) == ("purge-callers", "2026-12-21", "done")
    assert row.detail.startswith("1 appel(s) anonymisé(s)")

    again = jobs.purge_callers(job_app)
    assert again.status == "skipped" and "déjà exécuté" in again.message
    clock.set("2026-12-22T03:00")
    assert jobs.purge_callers(job_app).status == "done"  # the next day is another period


def test_a_failing_job_is_rolled_back_marked_failed_and_retried(job_app, db, clock, monkeypatch, caplog):
    old = _add_call(db, "CA-ancien", clock.now - timedelta(days=400))
    real_purge = jobs.operations.purge_callers

    def purge_then_crash(session, *, before):
        real_purge(session, before=before)
        raise RuntimeError("disque plein")

    monkeypatch.setattr(jobs.operations, "purge_callers", purge_then_crash)
    outcome = jobs.purge_callers(job_app)  # does not raise: the scheduler must keep going
    assert outcome.status == "failed" and "RuntimeError: disque plein" in outcome.message
    assert "disque plein" in caplog.text
    row = db.scalars(select(JobRun)).one()
    assert row.status == "failed" and "disque plein" in row.detail and row.finished_at
    assert db.get(Call, old).caller_hash == "hash-CA-ancien"  # the half-done work was rolled back

    monkeypatch.undo()
    assert jobs.purge_callers(job_app).status == "done"
    db.expire_all()
    assert db.get(Call, old).caller_hash is None and db.scalars(select(JobRun)).one().status == "done"


# --- quarterly workbooks -----------------------------------------------------------------------

@pytest.mark.parametrize("now, quarter", [
    ("2027-01-01T00:30", "2026-Q4"),  # still 31 December in UTC: the quarter is Paris's
    ("2026-12-31T23:30", "2026-Q3"),
    ("2026-04-01T02:00", "2026-Q1"),
    ("2026-09-15T12:00", "2026-Q2"),
])
def test_previous_quarter_is_the_last_one_ended_in_paris(app, clock, now, quarter):
    clock.set(now)
    assert jobs.previous_quarter(app) == quarter


def _cells(path) -> set:
    book = load_workbook(path, read_only=True)
    return {value for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for value in row}


def _arrange_quarter(db):
    """Rows in and around 2026-Q4; returns the references by name."""
    rows = {
        "paris": factories.solicitation_row(db, occurred_at=datetime(2026, 11, 15, 10, 0, tzinfo=PARIS)),
        # 31 December 22:00 in La Réunion is 19:00 in Paris: in Q4 for the 974.
        "reunion": factories.solicitation_row(db, departement="974", channel=Channel.form,
                                              occurred_at=datetime(2026, 12, 31, 18, 0, tzinfo=UTC)),
        "q1": factories.solicitation_row(db, occurred_at=datetime(2027, 1, 1, 0, 30, tzinfo=PARIS)),
        "q3": factories.solicitation_row(db, occurred_at=datetime(2026, 9, 30, 23, 0, tzinfo=PARIS)),
    }
    return {name: row.reference for name, row in rows.items()}


def test_quarterly_workbooks_are_written_and_linked_by_email_once(job_app, db, clock, smtp_server, tmp_path):
    refs = _arrange_quarter(db)
    clock.set("2027-01-01T02:00")
    runner = job_app.test_cli_runner()
    result = runner.invoke(args=["scheduler", "run-job", "quarterly-workbooks"])
    assert result.exit_code == 0, result.output
    assert "quarterly-workbooks 2026-Q4 : 102 classeurs, 2 sollicitations au national ; " \
           "courriel envoyé à 2 destinataire(s)" in result.output

    folder = tmp_path / "classeurs" / "2026-Q4"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 102 and "national.xlsx" in names and "departement-2A.xlsx" in names
    assert sorted(p.name for p in folder.parent.iterdir()) == ["2026-Q4"]  # no partial folder left
    national = _cells(folder / "national.xlsx")
    assert {refs["paris"], refs["reunion"]} <= national
    assert not {refs["q1"], refs["q3"]} & national
    paris = _cells(folder / "departement-75.xlsx")
    assert refs["paris"] in paris and refs["reunion"] not in paris and refs["q1"] not in paris

    [envelope] = smtp_server.envelopes
    assert envelope.rcpt_tos == TEAM
    [msg] = smtp_server.messages()
    assert msg["To"] == ", ".join(TEAM)
    assert msg["Subject"] == "SVI – classeurs du 4e trimestre 2026 disponibles"
    body = msg.get_content()
    assert ("Les classeurs de l'historique des sollicitations du 4e trimestre 2026 "
            "(du 01/10/2026 au 31/12/2026) sont disponibles.") in body
    assert "Classeur national (2 sollicitations) :\nhttps://svi.example.gouv.fr/classeurs/2026-Q4/national.xlsx\n" in body
    assert "- 75 – Paris (1 sollicitation) : https://svi.example.gouv.fr/classeurs/2026-Q4/departement-75.xlsx\n" in body
    assert "- 974 – La Réunion (1 sollicitation) : " in body
    assert "- 01 – Ain (0 sollicitation) : https://svi.example.gouv.fr/classeurs/2026-Q4/departement-01.xlsx" in body
    assert body.index("- 01 – Ain") < body.index("- 2A –") < body.index("- 974 –")

    again = runner.invoke(args=["scheduler", "run-job", "quarterly-workbooks", "--quarter", "2026q4"])
    assert again.exit_code == 0, again.output
    assert "quarterly-workbooks 2026-Q4 : déjà exécuté (début le " in again.output
    assert len(smtp_server.envelopes) == 1  # no second email
    row = db.scalars(select(JobRun)).one()
    assert (row.job, row.period, row.status) == ("quarterly-workbooks", "2026-Q4", "done")


def test_quarterly_workbooks_retry_after_a_mail_failure(job_app, db, smtp_server, tmp_path):
    port = job_app.config["SMTP_PORT"]
    job_app.config["SMTP_PORT"] = mailserver.free_port()  # nobody listens there
    failed = jobs.quarterly_workbooks(job_app, "2026-Q3")
    assert failed.status == "failed" and "impossible via 127.0.0.1" in failed.message
    assert db.scalars(select(JobRun)).one().status == "failed"

    job_app.config["SMTP_PORT"] = port
    done = jobs.quarterly_workbooks(job_app, "2026-Q3")
    assert done.status == "done", done.message
    assert len(smtp_server.envelopes) == 1 and (tmp_path / "classeurs" / "2026-Q3" / "national.xlsx").exists()


def test_the_quarterly_email_leaves_only_once_the_work_is_committed(job_app, db, smtp_server,
                                                                    monkeypatch):
    def cannot_finish(*args, **kwargs):
        raise RuntimeError("base indisponible")
    monkeypatch.setattr(runs, "finish", cannot_finish)
    outcome = jobs.quarterly_workbooks(job_app, "2026-Q3")
    assert outcome.status == "failed" and "base indisponible" in outcome.message
    assert smtp_server.envelopes == []  # the work was rolled back: no email about it


def test_quarterly_workbooks_without_a_team_address_still_writes_them(job_app, db, tmp_path, smtp_server):
    job_app.config["NATIONAL_TEAM_EMAILS"] = ""
    outcome = jobs.quarterly_workbooks(job_app, "2026-Q2")
    assert outcome.status == "done" and "aucun courriel (NATIONAL_TEAM_EMAILS vide)" in outcome.message
    assert (tmp_path / "classeurs" / "2026-Q2" / "departement-75.xlsx").exists()
    assert smtp_server.envelopes == []


# --- the command -------------------------------------------------------------------------------

def test_run_job_command(job_app, db, clock):
    runner = job_app.test_cli_runner()
    first = runner.invoke(args=["scheduler", "run-job", "purge-callers"])
    assert first.exit_code == 0, first.output
    assert first.output == "purge-callers 2026-12-21 : 0 appel(s) anonymisé(s) (antérieurs au 21/12/2025)\n"
    second = runner.invoke(args=["scheduler", "run-job", "purge-callers"])
    assert second.exit_code == 0
    # The run's own times are real time (the lock expires in real time), not the app's clock.
    assert re.fullmatch(r"purge-callers 2026-12-21 : déjà exécuté \(début le \d\d/\d\d/\d{4} à \d\d:\d\d\), "
                        r"rien à faire\n", second.output)
    assert db.scalars(select(JobRun)).one().status == "done"

    wrong = runner.invoke(args=["scheduler", "run-job", "purge-callers", "--quarter", "2026-Q4"])
    assert wrong.exit_code == 2 and "--quarter ne s'applique qu'à quarterly-workbooks" in wrong.output
    bad = runner.invoke(args=["scheduler", "run-job", "quarterly-workbooks", "--quarter", "2026-Q5"])
    assert bad.exit_code == 1 and "trimestre invalide : « 2026-Q5 »" in bad.output
    unknown = runner.invoke(args=["scheduler", "run-job", "sauvegarde"])
    assert unknown.exit_code == 2 and "purge-callers" in unknown.output


# --- the scheduler -----------------------------------------------------------------------------

def _bare_app(tmp_path):
    return create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'bare.sqlite3'}"})


def test_scheduler_jobs_and_triggers(tmp_path):
    application = _bare_app(tmp_path)
    now = datetime(2026, 11, 22, 23, 0, tzinfo=PARIS)
    scheduler = scheduler_cli.build_scheduler(application, now)
    assert str(scheduler.timezone) == "Europe/Paris"
    found = {job.id: job for job in scheduler.get_jobs()}
    assert set(found) == {"quarterly-workbooks", "purge-callers", "replay-journals",
                          "tickets-digest", "tickets-auto-close"}
    digest, auto_close = found["tickets-digest"], found["tickets-auto-close"]
    assert digest.func is jobs.tickets_digest and auto_close.func is jobs.tickets_auto_close
    assert digest.trigger.get_next_fire_time(None, now) == datetime(2026, 11, 23, 7, 30, tzinfo=PARIS)
    assert auto_close.trigger.get_next_fire_time(None, now) == datetime(2026, 11, 23, 3, 30, tzinfo=PARIS)
    assert (digest.max_instances, digest.coalesce, auto_close.max_instances) == (1, True, 1)
    replay = found["replay-journals"]
    assert replay.func is jobs.replay_journals and replay.trigger.interval.total_seconds() == 60
    assert (replay.max_instances, replay.coalesce) == (1, True)

    quarterly = found["quarterly-workbooks"]
    assert quarterly.func is jobs.quarterly_workbooks and quarterly.args == (application,)
    assert quarterly.trigger.get_next_fire_time(None, now) == datetime(2027, 1, 1, 2, 0, tzinfo=PARIS)
    after_new_year = datetime(2027, 1, 1, 2, 0, 1, tzinfo=PARIS)
    assert quarterly.trigger.get_next_fire_time(None, after_new_year) == datetime(2027, 4, 1, 2, 0, tzinfo=PARIS)
    assert (quarterly.max_instances, quarterly.coalesce, quarterly.misfire_grace_time) == (1, True, 86400)

    purge = found["purge-callers"]
    assert purge.func is jobs.purge_callers and purge.args == (application,)
    assert purge.trigger.get_next_fire_time(None, now) == datetime(2026, 11, 23, 3, 0, tzinfo=PARIS)
    # Daylight saving time ends on 25 October 2026: still 03:00 in Paris.
    assert purge.trigger.get_next_fire_time(None, datetime(2026, 10, 24, 4, 0, tzinfo=PARIS)) \
        == datetime(2026, 10, 25, 3, 0, tzinfo=PARIS)
    assert (purge.max_instances, purge.coalesce, purge.misfire_grace_time) == (1, True, 3600)


def test_scheduler_started_early_in_a_quarter_catches_up_the_workbooks(tmp_path):
    application = _bare_app(tmp_path)
    now = datetime(2027, 1, 3, 9, 0, tzinfo=PARIS)  # the process was down on the 1st at 02:00
    found = {job.id: job for job in scheduler_cli.build_scheduler(application, now).get_jobs()}
    catch_up = found["quarterly-workbooks-rattrapage"]
    assert catch_up.func is jobs.quarterly_workbooks and catch_up.max_instances == 1
    assert catch_up.trigger.get_next_fire_time(None, now) == now
    later = scheduler_cli.build_scheduler(application, datetime(2027, 1, 8, 9, 0, tzinfo=PARIS))
    assert "quarterly-workbooks-rattrapage" not in {job.id for job in later.get_jobs()}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_scheduler_process_stops_cleanly(tmp_path, sig):
    url = f"sqlite:///{tmp_path / 'svi.sqlite3'}"
    upgrade(url)
    env = dict(os.environ, DATABASE_URL=url, WORKBOOK_STORAGE_DIR=str(tmp_path / "classeurs"),
               MAIL_OUTBOX_DIR=str(tmp_path / "outbox"), SMTP_HOST="", LOG_LEVEL="INFO")
    script = ("from app import create_app\nfrom scheduler import cli\napp = create_app()\n"
              "'scheduler' in app.cli.commands or cli.init_app(app)\n"
              "from flask.cli import ScriptInfo\n"
              "app.cli.main(['scheduler'], obj=ScriptInfo(create_app=lambda: app))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "planificateur démarré" in line or not line:
                break
        assert "planificateur démarré" in lines[-1], "".join(lines)
        time.sleep(0.3)  # let it reach its main loop
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    log = "".join(lines) + rest
    assert "travail planifié : Classeurs trimestriels" in log and "Anonymisation des appelants" in log
    assert "planificateur arrêté" in rest and "Traceback" not in log
