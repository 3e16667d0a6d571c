"""Streaming the « historique des sollicitations » out of the database into workbooks."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from core.spreadsheets import EARLIEST_YEAR, LATEST_YEAR, is_plausible_year
from directory.models import Departement
from directory.reference import official_order
from tracking.columns import NO, TO_QUALIFY, YES
from tracking.models import Call, Motif, Solicitation, SousMotif, Thematique
from tracking.taxonomy import taxonomy

#: Rows fetched from the database at a time: memory stays flat whatever the period.
BATCH = 5000
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")


class PeriodError(ValueError):
    """A period given on the command line is invalid (French message)."""


def quarter_bounds(text: str) -> tuple[date, date]:
    """'2026-Q4' -> (2026-10-01, 2026-12-31)."""
    match = _QUARTER.match(text.strip())
    if not match:
        raise PeriodError(f"trimestre invalide : « {text} » (attendu : 2026-Q4)")
    year, q = int(match[1]), int(match[2])
    if not is_plausible_year(year):
        raise PeriodError(f"trimestre hors des années {EARLIEST_YEAR} à {LATEST_YEAR} : « {text} »")
    start = date(year, 3 * q - 2, 1)
    end = date(year + (q == 4), (3 * q) % 12 + 1, 1) - timedelta(days=1)
    return start, end


def quarter_of(day: date) -> str:
    """'2026-Q4' for any day of October to December 2026."""
    return f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}"


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else (YES if value else NO)


def iter_rows(db: Session, *, departement: str | None, start: date, end: date) -> Iterator[tuple]:
    """Historique rows (columns.HISTORIQUE order) of a département or of all, in local time.

    `start` and `end` are inclusive local dates; rows are streamed in batches.
    """
    zones = {code: ZoneInfo(tz) for code, tz in db.execute(select(Departement.code, Departement.timezone))}
    # Overseas timezones are up to 14 h from UTC: widen the SQL range, then filter on local dates.
    low = datetime.combine(start, time(0), UTC) - timedelta(hours=14)
    high = datetime.combine(end + timedelta(days=1), time(0), UTC) + timedelta(hours=14)
    sm = aliased(SousMotif)
    stmt = (select(Solicitation.reference, Solicitation.occurred_at, Solicitation.departement_code,
                   Solicitation.channel, Thematique.label, Motif.label, sm.label, Call.outcome,
                   Call.wait_seconds, Call.talk_seconds, Solicitation.resolved_first_level,
                   Solicitation.escalated, Solicitation.comment, Solicitation.call_id,
                   Solicitation.is_primary)
            .outerjoin(Thematique, Thematique.id == Solicitation.thematique_id)
            .outerjoin(Motif, Motif.id == Solicitation.motif_id)
            .outerjoin(sm, sm.id == Solicitation.sous_motif_id)
            .outerjoin(Call, Call.id == Solicitation.call_id)
            .where(Solicitation.occurred_at >= low, Solicitation.occurred_at < high)
            .order_by(Solicitation.occurred_at, Solicitation.id)
            .execution_options(yield_per=BATCH))
    if departement:
        stmt = stmt.where(Solicitation.departement_code == departement)
    for (ref, at, code, channel, them, motif, sous, outcome, wait, talk, resolved, escalated,
         comment, call_id, primary) in db.execute(stmt):
        local = at.astimezone(zones[code])
        if not start <= local.date() <= end:
            continue
        yield (ref, local.replace(tzinfo=None), code, channel.value, them or TO_QUALIFY,
               motif or TO_QUALIFY, sous, outcome.value if outcome else None, wait, talk,
               _yes_no(resolved), _yes_no(escalated), comment or "", call_id, YES if primary else NO)


def export_workbook(db: Session, *, departement: str | None, start: date, end: date, path,
                    progress=None) -> int:
    """Write the indicator workbook of a département (or national when None); rows written."""
    from tracking.workbook import write_workbook

    codes = tuple(official_order(db.scalars(select(Departement.code))))
    if departement:
        dept = db.get(Departement, departement)
        if dept is None:
            raise PeriodError(f"département inconnu : {departement}")
        title = f"Département {dept.code} – {dept.name}"
        scope = (dept.code,)
    else:
        title, scope = "National – tous les départements", codes
    return write_workbook(path, iter_rows(db, departement=departement, start=start, end=end),
                          title=title, departements=scope, national=departement is None,
                          start=start, end=end, taxonomy=taxonomy(db), progress=progress)
