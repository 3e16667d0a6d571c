"""Job runs: one row per job and period, so that a job runs once even with several schedulers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class JobRun(Base):
    """A job's run for one period (e.g. "quarterly-workbooks", "2026-Q4")."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(60))
    #: The period the run covers; inserting (job, period) first is the lock.
    period: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: running | done | failed
    status: Mapped[str] = mapped_column(String(10), default="running")
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("job", "period"),)
