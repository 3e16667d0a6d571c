"""Small helpers shared by tests: read records back, read workbooks' tables (arranging data:
`tests/factories.py`)."""

from __future__ import annotations

from sqlalchemy import event, select

from tracking.models import Call


def call_record(db, sid) -> Call:
    """The tracked call, read fresh from the database."""
    db.expire_all()
    return db.scalars(select(Call).where(Call.call_sid == sid)).one()


def count_selects(engine, table) -> list[str]:
    """A list that fills with every SELECT the engine runs on `table` from now on."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append(statement)
    return seen


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
