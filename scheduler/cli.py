"""`flask --app app scheduler`: the scheduler process, and `scheduler run-job NAME` to run a job now."""

from __future__ import annotations

import logging
import signal
import time
from datetime import datetime, timedelta

import click
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask, current_app
from flask.cli import with_appcontext

from scheduler import jobs

log = logging.getLogger(__name__)

#: Starting the scheduler this soon after a quarter began runs the quarterly job at once, in
#: case the process was down at 02:00 on the 1st; the lock makes it a no-op when already done.
CATCH_UP_DAYS = 7


def build_scheduler(app: Flask, now: datetime | None = None) -> BackgroundScheduler:
    """The scheduler with its jobs, not started (Europe/Paris time)."""
    scheduler = BackgroundScheduler(
        timezone=jobs.PARIS,
        # Two workers: the daily purge never waits behind a long quarterly run.
        executors={"default": ThreadPoolExecutor(max_workers=2)})
    # Set on each job rather than as defaults: a job never overlaps itself (max_instances) and
    # several missed runs collapse into one (coalesce).
    once = {"max_instances": 1, "coalesce": True}
    scheduler.add_job(
        jobs.quarterly_workbooks, CronTrigger(month="1,4,7,10", day=1, hour=2, minute=0, timezone=jobs.PARIS),
        args=[app], id=jobs.QUARTERLY_WORKBOOKS, name="Classeurs trimestriels",
        # Late by up to a day (machine asleep, process stalled): still worth running.
        misfire_grace_time=24 * 3600, **once)
    scheduler.add_job(
        jobs.purge_callers, CronTrigger(hour=3, minute=0, timezone=jobs.PARIS),
        args=[app], id=jobs.PURGE_CALLERS, name="Anonymisation des appelants",
        # Tomorrow's run catches up anyway: no need to run a purge hours late.
        misfire_grace_time=3600, **once)
    scheduler.add_job(
        jobs.tickets_auto_close, CronTrigger(hour=3, minute=30, timezone=jobs.PARIS),
        args=[app], id=jobs.TICKETS_AUTO_CLOSE, name="Clôture automatique des tickets",
        misfire_grace_time=6 * 3600, **once)
    scheduler.add_job(
        jobs.tickets_digest, CronTrigger(hour=7, minute=30, timezone=jobs.PARIS),
        args=[app], id=jobs.TICKETS_DIGEST, name="Récapitulatif quotidien des tickets",
        # Sent late in the morning is still useful; the next day's replaces it otherwise.
        misfire_grace_time=4 * 3600, **once)
    scheduler.add_job(
        jobs.replay_journals, IntervalTrigger(minutes=1), args=[app], id=jobs.REPLAY_JOURNALS,
        name="Rejeu des journaux d'appels", next_run_time=datetime.now(jobs.PARIS),
        misfire_grace_time=None, **once)
    now = (now or app.config["CLOCK"]()).astimezone(jobs.PARIS)
    quarter_start = now.replace(month=3 * ((now.month - 1) // 3) + 1, day=1, hour=0, minute=0,
                                second=0, microsecond=0)
    if now - quarter_start < timedelta(days=CATCH_UP_DAYS):
        scheduler.add_job(jobs.quarterly_workbooks, DateTrigger(now, timezone=jobs.PARIS), args=[app],
                          id=f"{jobs.QUARTERLY_WORKBOOKS}-rattrapage", name="Classeurs trimestriels (rattrapage)",
                          misfire_grace_time=None, **once)
    return scheduler


def serve(app: Flask) -> None:
    """Run the scheduler until SIGTERM or SIGINT; a running job is allowed to finish."""
    scheduler = build_scheduler(app)
    from core import observability
    observability.serve_scheduler_metrics(app)  # SCHEDULER_METRICS_BIND, when set

    stopping: list[int] = []

    def stop(signum, _frame):
        # Only a flag: the main thread notices it within 0.2 s and shuts the scheduler down
        # itself (a signal landing inside the scheduler's own code cannot interrupt it).
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for job in scheduler.get_jobs():
        log.info("travail planifié : %s (%s)", job.name, job.trigger)
    scheduler.start()
    log.info("planificateur démarré (Europe/Paris) ; SIGTERM ou Ctrl-C pour l'arrêter")
    try:
        while not stopping:
            time.sleep(0.2)
    finally:
        log.info("arrêt du planificateur : un travail en cours se termine d'abord")
        scheduler.shutdown(wait=True)
    log.info("planificateur arrêté")


def init_app(app: Flask) -> None:
    """Register the `scheduler` command group."""

    @app.cli.group("scheduler", invoke_without_command=True)
    @click.pass_context
    @with_appcontext  # a group's own callback gets no app context from Flask
    def scheduler_group(ctx):
        """Lance le planificateur (processus à part) : classeurs trimestriels, anonymisation
        quotidienne, récapitulatif et clôture automatique des tickets."""
        if ctx.invoked_subcommand is None:
            serve(current_app._get_current_object())

    @scheduler_group.command("run-job")
    @click.argument("name", type=click.Choice(sorted(jobs.JOBS)))
    @click.option("--quarter", default=None, help="Trimestre des classeurs, ex. 2026-Q4 "
                  "(par défaut : le dernier trimestre terminé).")
    def run_job(name, quarter):
        """Exécute un travail maintenant (une seule fois par période, comme le planificateur)."""
        app = current_app._get_current_object()
        if quarter is not None and name != jobs.QUARTERLY_WORKBOOKS:
            raise click.UsageError(f"--quarter ne s'applique qu'à {jobs.QUARTERLY_WORKBOOKS}")
        outcome = (jobs.quarterly_workbooks(app, quarter) if name == jobs.QUARTERLY_WORKBOOKS
                   else jobs.JOBS[name](app))
        click.echo(outcome.message, err=outcome.status == "failed")
        if outcome.status == "failed":
            raise click.exceptions.Exit(1)
