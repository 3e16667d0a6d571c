"""The periodic jobs. Each one claims its period, works in one transaction, and never raises.

`run_job` is the jobs' edge: it commits the work together with the run's outcome, then runs the
after-commit callbacks (`core.db.after_commit`): an email leaves only once the work is committed.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import db, mail, observability
from directory.models import Departement
from directory.reference import official_order
from scheduler import runs
from scheduler.models import JobRun
from tracking import operations
from tracking.exports import PeriodError, export_workbook, quarter_bounds, quarter_of

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
QUARTERLY_WORKBOOKS = "quarterly-workbooks"
PURGE_CALLERS = "purge-callers"
#: URL path under PUBLIC_BASE_URL where the web UI serves WORKBOOK_STORAGE_DIR.
WORKBOOKS_URL_PATH = "/classeurs"


@dataclass(frozen=True)
class JobResult:
    """What a job did: "done", "skipped" (already done or running elsewhere) or "failed"."""

    status: str
    message: str


@observability.counted_job  # svi_job_runs_total, by job and result
def run_job(app: Flask, job: str, period: str, work: Callable[[Session], str]) -> JobResult:
    """Claim (job, period), run `work` and record its outcome; log every exception, raise none.

    A failed after-commit callback (the email) leaves the work committed but marks the run
    failed, so that running the job again sends it."""
    label = f"{job} {period}"
    with app.app_context():
        started = time.monotonic()
        log.info("%s : début", label)
        try:
            session = db.session()
            run = runs.claim(session, job, period)
            if run is None:
                current = runs.get(session, job, period)
                state = "déjà exécuté" if current and current.status == "done" else "en cours ailleurs"
                since = _local(current.started_at) if current else "?"
                message = f"{label} : {state} (début le {since}), rien à faire"
                log.info("%s", message)
                return JobResult("skipped", message)
        except Exception as exc:
            log.exception("%s : verrou impossible à prendre", label)
            return JobResult("failed", f"{label} : échec du verrou : {type(exc).__name__}: {exc}")
        try:
            detail = work(session)
            runs.finish(session, run, detail)
            failures = db.commit()
            if failures:
                raise failures[0]
        except Exception as exc:
            log.exception("%s : échec", label)
            message = f"{label} : échec : {type(exc).__name__}: {exc}"
            db.rollback()
            try:
                runs.fail(session, run, message)
                db.commit()
            except Exception:
                log.exception("%s : échec non enregistré", label)
            return JobResult("failed", message)
        log.info("%s : fin en %.1f s — %s", label, time.monotonic() - started, detail)
        return JobResult("done", f"{label} : {detail}")


def _local(at) -> str:
    return at.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


# --- quarterly workbooks -----------------------------------------------------------------------

def previous_quarter(app: Flask) -> str:
    """The quarter that ended last, by the app's clock in Europe/Paris (e.g. '2026-Q4' in January 2027)."""
    today = app.config["CLOCK"]().astimezone(PARIS).date()
    first_day = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return quarter_of(first_day - timedelta(days=1))


def workbook_dir(app: Flask) -> Path:
    """Root folder of the quarterly workbooks (WORKBOOK_STORAGE_DIR, default instance/workbooks)."""
    return Path(app.config["WORKBOOK_STORAGE_DIR"] or Path(app.instance_path) / "workbooks")


def workbook_url(app: Flask, quarter: str, name: str) -> str:
    """Link to a stored workbook, as served by the web UI."""
    return f"{app.config['PUBLIC_BASE_URL']}{WORKBOOKS_URL_PATH}/{quarter}/{name}"


def national_team(app: Flask) -> list[str]:
    """NATIONAL_TEAM_EMAILS as a list."""
    return [a.strip() for a in app.config["NATIONAL_TEAM_EMAILS"].split(",") if a.strip()]


def quarterly_workbooks(app: Flask, quarter: str | None = None) -> JobResult:
    """Write the national and every département's workbook of a quarter, then email the links."""
    if quarter is None:
        quarter = previous_quarter(app)
    else:
        try:
            start, _ = quarter_bounds(quarter)
        except PeriodError as exc:
            return JobResult("failed", str(exc))
        quarter = quarter_of(start)  # one spelling, one lock: "2026q4" is "2026-Q4"
    return run_job(app, QUARTERLY_WORKBOOKS, quarter, lambda session: _write_quarter(app, session, quarter))


def _write_quarter(app: Flask, session: Session, quarter: str) -> str:
    start, end = quarter_bounds(quarter)
    root = workbook_dir(app)
    # Written aside then moved in place: the web UI never serves a half-written quarter.
    partial = root / f".{quarter}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    national = export_workbook(session, departement=None, start=start, end=end,
                               path=partial / "national.xlsx")
    departements = official_order(session.scalars(select(Departement)), lambda d: d.code)
    lines = []
    for dept in departements:
        name = f"departement-{dept.code}.xlsx"
        count = export_workbook(session, departement=dept.code, start=start, end=end,
                                path=partial / name)
        lines.append(f"- {dept.code} – {dept.name} ({_count(count)}) : {workbook_url(app, quarter, name)}")
    final = root / quarter
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    log.info("%s : %d classeur(s) écrits dans %s", quarter, len(departements) + 1, final)

    recipients = national_team(app)
    summary = f"{len(departements) + 1} classeurs, {_count(national)} au national"
    if not recipients:
        log.warning("%s : NATIONAL_TEAM_EMAILS est vide, aucun courriel envoyé", quarter)
        return f"{summary} ; aucun courriel (NATIONAL_TEAM_EMAILS vide)"
    year, number = quarter.split("-Q")
    ordinal = "1er" if number == "1" else f"{number}e"
    body = "\n".join([
        "Bonjour,",
        "",
        f"Les classeurs de l'historique des sollicitations du {ordinal} trimestre {year} "
        f"(du {start:%d/%m/%Y} au {end:%d/%m/%Y}) sont disponibles.",
        "",
        f"Classeur national ({_count(national)}) :",
        workbook_url(app, quarter, "national.xlsx"),
        "",
        f"Classeurs départementaux ({len(departements)}) :",
        *lines,
        "",
        "Ce message est envoyé automatiquement par le SVI ; merci de ne pas y répondre.",
    ])
    subject = f"SVI – classeurs du {ordinal} trimestre {year} disponibles"
    db.after_commit(lambda: mail.send(app, to=recipients, subject=subject, body=body + "\n"))
    return f"{summary} ; courriel envoyé à {len(recipients)} destinataire(s)"


def _count(n: int) -> str:
    return f"{n} sollicitation" + ("s" if n > 1 else "")


# --- caller purge ------------------------------------------------------------------------------

def purge_callers(app: Flask) -> JobResult:
    """Erase who called before the retention period (SVI_CALLER_RETENTION_DAYS), and their
    voicemails at Twilio (tickets.recordings); once a day."""
    now = app.config["CLOCK"]()
    before = now - timedelta(days=app.config["SVI_CALLER_RETENTION_DAYS"])

    def work(session: Session) -> str:
        from tickets import recordings
        # Voicemails first: deleted at Twilio, and only then their address forgotten (a failure
        # keeps it for the next day's run).
        deleted = recordings.purge_expired(app, session, before=before, commit=db.commit)
        count = 0
        # One short transaction per batch: calls keep being recorded meanwhile.
        while batch := operations.purge_callers(session, before=before):
            count += batch
            db.commit()
        from tickets import operations as ticket_operations
        tickets = ticket_operations.purge_callers(session, before=before)
        db.commit()
        detail = f"{count} appel(s) anonymisé(s) (antérieurs au {before.astimezone(PARIS):%d/%m/%Y})"
        if tickets:
            detail += f", {tickets} ticket(s) sans numéro d'appelant"
        return detail + (f" ; {summary}" if (summary := deleted.summary()) else "")

    return run_job(app, PURGE_CALLERS, now.astimezone(PARIS).date().isoformat(), work)


# --- journals of dead processes ---------------------------------------------------------------

REPLAY_JOURNALS = "replay-journals"


def replay_journals(app: Flask) -> int:
    """Replay the call journals left by processes that are gone (every minute).

    Needs no once-per-period lock: a live process's journal is flock-ed, and every entry is
    applied at most once (`journal_replays`), whoever replays it.
    """
    from tracking.journal import replay_orphans
    try:
        count = replay_orphans(app.config["JOURNAL_DIR"], app.extensions["svi.sessionmaker"])
    except Exception:
        log.exception("rejeu des journaux d'appels impossible pour l'instant")
        return 0
    if count:
        log.info("%d enregistrement(s) d'appel rejoué(s) depuis les journaux", count)
    return count


# --- tickets -----------------------------------------------------------------------------------

TICKETS_DIGEST = "tickets-digest"
TICKETS_AUTO_CLOSE = "tickets-auto-close"


def tickets_digest(app: Flask) -> JobResult:
    """Each département's referents get the day's open callbacks, voicemails and late tickets;
    once a day. A failed email fails the run, so that running it again sends it — and only it:
    each département's digest sent is recorded as a run of its own (`tickets-digest:93`)."""
    now = app.config["CLOCK"]()
    period = now.astimezone(PARIS).date().isoformat()

    def sent(code: str) -> str:
        return f"{TICKETS_DIGEST}:{code}"

    def send(digest) -> None:
        mail.send(app, to=digest.to, subject=digest.subject, body=digest.body)
        with app.extensions["svi.sessionmaker"]() as own:
            own.add(JobRun(job=sent(digest.departement_code), period=period, started_at=now,
                           finished_at=now, status="done", detail=", ".join(digest.to)))
            own.commit()

    def work(session: Session) -> str:
        from tickets import operations as tickets
        done = set(session.scalars(select(JobRun.job).where(
            JobRun.job.like(f"{TICKETS_DIGEST}:%"), JobRun.period == period,
            JobRun.status == "done")))
        digests = [d for d in tickets.digests(session, now)
                   if sent(d.departement_code) not in done]
        for digest in digests:
            db.after_commit(lambda d=digest: send(d))
        skipped = tickets.departements_without_referents(session, now)
        if skipped:
            log.warning("récapitulatif des tickets : aucun référent actif pour %s",
                        ", ".join(skipped))
        return (f"{len(digests)} récapitulatif(s) envoyé(s)"
                + (f" ; {len(done)} déjà envoyé(s) plus tôt" if done else "")
                + (f" ; sans référent actif : {', '.join(skipped)}" if skipped else ""))

    return run_job(app, TICKETS_DIGEST, period, work)


def tickets_auto_close(app: Flask) -> JobResult:
    """Close the tickets resolved TICKETS_AUTO_CLOSE_DAYS days ago and never confirmed
    (« délai dépassé »); once a day. The requesters' emails leave after the commit."""
    now = app.config["CLOCK"]()
    days = int(app.config["TICKETS_AUTO_CLOSE_DAYS"])

    def work(session: Session) -> str:
        from tickets import operations as tickets
        count = tickets.auto_close(session, now, days)
        return f"{count} ticket(s) clos (résolus depuis {days} jour(s) sans confirmation)"

    return run_job(app, TICKETS_AUTO_CLOSE, now.astimezone(PARIS).date().isoformat(), work)


#: Jobs by name, for `flask scheduler run-job NAME`.
JOBS = {QUARTERLY_WORKBOOKS: quarterly_workbooks, PURGE_CALLERS: purge_callers,
        TICKETS_DIGEST: tickets_digest, TICKETS_AUTO_CLOSE: tickets_auto_close}
