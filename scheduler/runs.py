"""Job locking: a job runs once per period, whatever the number of schedulers or web instances.

The lock is the (job, period) unique row of `job_runs`. `claim` inserts it in a short
transaction of its own, committed at once, so that every other scheduler sees it before the
work starts; the work itself, and `finish`/`fail`, stay in the caller's session and are
committed by the job (the edge), the run's outcome in the same transaction as its work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import utcnow
from scheduler.models import JobRun

#: A run still `running` after this long is taken for dead (process killed) and may be reclaimed.
STALE_AFTER = timedelta(hours=6)
#: Longest `detail` kept (an error message).
DETAIL_MAX = 2000


def claim(db: Session, job: str, period: str, *, now: datetime | None = None,
          stale_after: timedelta = STALE_AFTER) -> JobRun | None:
    """Lock (job, period) and return its run; None when done or running elsewhere (failed or stale: retaken)."""
    now = now or utcnow()
    # A session of its own on the same engine: committing the lock must not commit (or
    # depend on) whatever the caller's session holds.
    with Session(bind=db.get_bind()) as own:
        own.add(JobRun(job=job, period=period, started_at=now, status="running", detail=""))
        try:
            own.commit()
        except IntegrityError:
            own.rollback()
            # Only one of several concurrent claimers can move the row: the WHERE clause is
            # evaluated again on the locked row (PostgreSQL) or under the write lock (SQLite).
            taken = own.execute(
                update(JobRun)
                .where(JobRun.job == job, JobRun.period == period,
                       or_(JobRun.status == "failed",
                           and_(JobRun.status == "running", JobRun.started_at < now - stale_after)))
                .values(status="running", started_at=now, finished_at=None, detail="")
                .execution_options(synchronize_session=False))
            own.commit()
            if taken.rowcount != 1:
                return None
    return db.scalars(select(JobRun).where(JobRun.job == job, JobRun.period == period)
                      .execution_options(populate_existing=True)).one()


def get(db: Session, job: str, period: str) -> JobRun | None:
    """The run of (job, period), if any."""
    return db.scalars(select(JobRun).where(JobRun.job == job, JobRun.period == period)).one_or_none()


def finish(db: Session, run: JobRun, detail: str = "", *, now: datetime | None = None) -> None:
    """Mark the run done (flushed; the job commits it together with its work)."""
    _close(db, run, "done", detail, now)


def fail(db: Session, run: JobRun, detail: str, *, now: datetime | None = None) -> None:
    """Mark the run failed, so that it may be claimed again (flushed; the job commits)."""
    _close(db, run, "failed", detail, now)


def _close(db: Session, run: JobRun, status: str, detail: str, now: datetime | None) -> None:
    run = db.merge(run)
    run.status = status
    run.finished_at = now or utcnow()
    run.detail = detail[:DETAIL_MAX]
    db.flush()
