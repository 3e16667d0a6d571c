"""A département's whole settings as one value: read from the database, compared, shown as the
import file's cells, and saved with its audit and its version check.

The import (a row per département), the web edit page and the CLI all build a
`DepartementSettings` with `directory/rules.py` and save it here: one code path for every change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, selectinload

from audit.models import AuditEntry
from audit.operations import Actor, record
from core import text as text_policy
from directory import rules
from directory.models import Departement, OpeningSlot, RingStrategy, WorkedHoliday
from directory.operations import add_exception, set_lines, set_worked_holiday
from directory.rules import Period

#: Field labels, as the import file's column headers (and the audit log's field names).
COLUMNS = ("Code", "Département", "Assistance téléphonique", "Lignes", "Sonnerie",
           "Durée de sonnerie (s)", "Messagerie vocale", "Formulaire", "Courriel", "Horaires",
           "Fermetures exceptionnelles", "Ouvertures exceptionnelles", "Jours fériés travaillés")


@dataclass(frozen=True)
class DepartementSettings:
    """Everything an admin sets for one département, normalized so that equal settings compare
    equal (a file row, a web form and the database alike)."""

    code: str
    phone_assistance: bool
    lines: tuple[str, ...]
    ring_strategy: RingStrategy
    ring_timeout: int
    voicemail_enabled: bool
    form_url: str | None
    email: str | None
    slots: tuple[rules.WeeklySlot, ...]
    closures: tuple[Period, ...]
    openings: tuple[Period, ...]
    worked_holidays: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """What saving settings would change for one département: {column: [before, after]}."""

    code: str
    name: str
    changes: dict[str, list[str]]


class VersionConflict(Exception):
    """Someone else saved this département since the editor loaded it; nothing was written."""

    def __init__(self, code: str, last_change: AuditEntry | None):
        super().__init__(f"département {code} modifié entre-temps")
        self.code, self.last_change = code, last_change


def load_all(db: Session) -> list[Departement]:
    """Every département with its lines, slots and exceptions, in three queries."""
    return list(db.scalars(select(Departement).options(
        selectinload(Departement.lines), selectinload(Departement.slots),
        selectinload(Departement.exceptions))))


def worked_by_departement(db: Session) -> dict[str, tuple[str, ...]]:
    """Per-département worked holidays (the national ones are set apart, by the CLI)."""
    result: dict[str, list[str]] = {}
    for w in db.scalars(select(WorkedHoliday).where(WorkedHoliday.departement_code.is_not(None),
                                                    WorkedHoliday.worked)):
        result.setdefault(w.departement_code, []).append(w.holiday_name)
    return {code: tuple(sorted(names)) for code, names in result.items()}


def _normal(text: str | None) -> str:
    """Stored text as an export writes it and an import reads it back: exports round-trip."""
    return " ".join(text_policy.clean(text or "").split())


def of(dept: Departement, worked: tuple[str, ...]) -> DepartementSettings:
    """A département's settings in the database, in the same normalized form as a parsed row."""
    def periods(kind: str) -> tuple[Period, ...]:
        opening = kind == "opening"  # closures are whole days: stray hours are not theirs
        found = [Period(e.start_date, e.end_date, _normal(e.reason),
                        e.start_time if opening else None, e.end_time if opening else None)
                 for e in dept.exceptions if e.kind.name == kind]
        return tuple(sorted(found, key=rules.period_key))

    return DepartementSettings(
        code=dept.code, phone_assistance=dept.phone_assistance,
        lines=tuple(line.number for line in dept.lines if line.active),
        ring_strategy=dept.ring_strategy, ring_timeout=dept.ring_timeout,
        voicemail_enabled=dept.voicemail_enabled, form_url=_normal(dept.form_url) or None,
        email=_normal(dept.email) or None,
        slots=tuple(sorted((s.weekday, s.start, s.end) for s in dept.slots)),
        closures=periods("closure"), openings=periods("opening"), worked_holidays=worked)


def current(db: Session, dept: Departement) -> DepartementSettings:
    """One département's settings as stored."""
    return of(dept, worked_by_departement(db).get(dept.code, ()))


def cells(s: DepartementSettings, name: str) -> dict[str, str]:
    """Settings as the text cells of one import/export row."""
    return {
        "Code": s.code,
        "Département": name,
        "Assistance téléphonique": rules.format_yes_no(s.phone_assistance),
        "Lignes": rules.format_lines(s.lines),
        "Sonnerie": rules.format_ring_strategy(s.ring_strategy),
        "Durée de sonnerie (s)": str(s.ring_timeout),
        "Messagerie vocale": rules.format_yes_no(s.voicemail_enabled),
        "Formulaire": s.form_url or "",
        "Courriel": s.email or "",
        "Horaires": rules.format_slots(s.slots),
        "Fermetures exceptionnelles": rules.format_periods(s.closures),
        "Ouvertures exceptionnelles": rules.format_periods(s.openings),
        "Jours fériés travaillés": rules.format_holidays(s.worked_holidays),
    }


def describe(db: Session, wanted: list[DepartementSettings]) -> list[Change]:
    """Field by field, what saving `wanted` would change (départements without change omitted)."""
    depts = {d.code: d for d in load_all(db)}
    worked = worked_by_departement(db)
    result = []
    for s in wanted:
        dept = depts[s.code]
        before, after = cells(of(dept, worked.get(dept.code, ())), dept.name), cells(s, dept.name)
        changes = {c: [before[c], after[c]] for c in COLUMNS if before[c] != after[c]}
        if changes:
            result.append(Change(dept.code, dept.name, changes))
    return result


def digest(changes: list[Change]) -> str:
    """A fingerprint of what a save would change (before and after): a confirmation applies
    exactly what was previewed, and nothing if the directory moved in between."""
    text = json.dumps([[c.code, c.changes] for c in changes], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _bump(db: Session, code: str, expected_version: int | None) -> None:
    """Move the département's version on; refuse when it is not the one the editor loaded.

    One UPDATE, so two concurrent saves cannot both pass: the second waits for the first's
    lock, then finds the version moved.
    """
    stmt = update(Departement).where(Departement.code == code).values(
        version=Departement.version + 1)
    if expected_version is not None:
        stmt = stmt.where(Departement.version == expected_version)
    if db.execute(stmt).rowcount != 1:
        last = db.scalars(select(AuditEntry).where(AuditEntry.departement_code == code)
                          .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(1)).first()
        raise VersionConflict(code, last)


def _check_version(db: Session, code: str, expected_version: int) -> None:
    """Refuse when the département's version is not the one the editor loaded (no change)."""
    current = db.scalar(select(Departement.version).where(Departement.code == code))
    if current != expected_version:
        last = db.scalars(select(AuditEntry).where(AuditEntry.departement_code == code)
                          .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(1)).first()
        raise VersionConflict(code, last)


def normal_text(text: str | None) -> str:
    """Text as the directory compares and shows it: spaces collapsed (see `of`)."""
    return _normal(text)


def save(db: Session, actor: Actor, wanted: list[DepartementSettings], *,
         expected_versions: dict[str, int] | None = None,
         labels: dict[str, dict[str, str]] | None = None) -> list[Change]:
    """Save each département's settings: lines, hours, exceptions, worked holidays; audit each
    change field by field and move its version on. Returns what changed.

    `expected_versions` (code → version the editor loaded) refuses a stale save with
    VersionConflict; `labels` (code → number → label) renames lines (a file keeps them).
    """
    expected_versions, labels = expected_versions or {}, labels or {}
    changes = {c.code: c for c in describe(db, wanted)}
    for s in wanted:
        dept = db.get(Departement, s.code)
        old_labels = {line.number: line.label or "" for line in dept.lines}
        new_labels = {n: labels.get(s.code, {}).get(n, old_labels.get(n, "")) for n in s.lines}
        renamed = {n: [old_labels[n], new_labels[n]] for n in s.lines
                   if n in old_labels and old_labels[n] != new_labels[n]}
        if s.code not in changes and not renamed:
            if s.code in expected_versions:  # stale and unchanged: still refused, version kept
                _check_version(db, s.code, expected_versions[s.code])
            continue
        _bump(db, s.code, expected_versions.get(s.code))
        _write(db, dept, s, new_labels)
        audit = dict(changes[s.code].changes) if s.code in changes else {}
        audit.update({f"Libellé de {n}": values for n, values in renamed.items()})
        record(db, actor, entity="département", departement_code=s.code,
               summary=f"annuaire modifié : {', '.join(audit)}", changes=audit)
    db.flush()
    return list(changes.values())


def _write(db: Session, dept: Departement, s: DepartementSettings, labels: dict[str, str]) -> None:
    dept.phone_assistance = s.phone_assistance
    dept.ring_strategy = s.ring_strategy
    dept.ring_timeout = s.ring_timeout
    dept.voicemail_enabled = s.voicemail_enabled
    dept.form_url = s.form_url
    dept.email = s.email
    set_lines(db, dept, [(number, labels.get(number) or None) for number in s.lines])
    dept.slots = [OpeningSlot(weekday=wd, start=start, end=end) for wd, start, end in s.slots]
    dept.exceptions.clear()
    for kind, periods in (("closure", s.closures), ("opening", s.openings)):
        for p in periods:
            add_exception(db, dept, kind, p.start_date, p.end_date, p.reason,
                          p.start_time, p.end_time)
    # The settings list the holidays the département works; its days kept off stay as they are.
    db.execute(delete(WorkedHoliday).where(WorkedHoliday.departement_code == s.code,
                                           WorkedHoliday.worked))
    for name in s.worked_holidays:
        set_worked_holiday(db, name, s.code)
