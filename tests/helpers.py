"""Small arrangers shared by tests: edit the directory the way an admin would."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from directory import operations
from directory.models import RingStrategy
from tracking.models import Call


def configure(db, code, *, lines=None, strategy=None, voicemail=None, phone_assistance=None,
              form_url=None, email=None):
    """Change a département and commit, as the admin UI would."""
    dept = operations.get_departement(db, code)
    if lines is not None:
        operations.set_lines(db, dept, [(n, None) for n in lines])
    if strategy is not None:
        dept.ring_strategy = RingStrategy[strategy]
    if voicemail is not None:
        dept.voicemail_enabled = voicemail
    if phone_assistance is not None:
        dept.phone_assistance = phone_assistance
    if form_url is not None:
        dept.form_url = form_url
    if email is not None:
        dept.email = email
    db.commit()
    return dept


def close(db, code, start: date, end: date, reason: str):
    """Add an exceptional closure and commit."""
    operations.add_exception(db, operations.get_departement(db, code), "closure", start, end, reason)
    db.commit()


def call_record(db, sid) -> Call:
    """The tracked call, read fresh from the database."""
    db.expire_all()
    return db.scalars(select(Call).where(Call.call_sid == sid)).one()


def heard(transcript) -> str:
    """Everything the caller heard, as one string."""
    return " | ".join(transcript.heard)


# --- workbooks -------------------------------------------------------------------------

def volume_table(ws) -> dict[tuple[str, str | None], list]:
    """The volumes table keyed like expected_volumes."""
    table, thematique, inside = {}, None, False
    for row in ws.iter_rows(values_only=True):
        if row[:2] == ("Thématique", "Motif"):
            inside = True
        elif inside and row[0] == "Total des sollicitations":
            table[(row[0], None)] = list(row[2:6])
            return table
        elif inside and row[0] is not None:
            thematique = row[0]
            table[(thematique, None)] = list(row[2:6])
        elif inside:
            table[(thematique, row[1])] = list(row[2:6])
    raise AssertionError("volumes table not found")


def kpi_table(ws) -> dict[str, list]:
    table, inside = {}, False
    for row in ws.iter_rows(values_only=True):
        if row[0] == "Indicateur":
            inside = True
        elif inside and row[0] and row[2:6] != (None,) * 4:
            table[row[0]] = [None if v == "" else v for v in row[2:6]]
        elif inside:
            return table
    raise AssertionError("KPI table not found")
