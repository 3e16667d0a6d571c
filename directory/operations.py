"""Directory operations: seed, read snapshots, edit lines. They only flush; the edge commits.

Values are checked by `directory/rules.py` (DirectoryError, in French) before anything is written.
"""

from __future__ import annotations

import re

from datetime import date, time

from sqlalchemy import String, delete, select, type_coerce
from sqlalchemy.orm import Session, selectinload

from directory import rules
from directory.models import (DateException, Departement, ExceptionKind, Line, OpeningSlot,
                              RingStrategy, WorkedHoliday)
from audit.operations import record
from directory.reference import official_order, territories
from directory.rules import DirectoryError, checked_text
from directory.schedule import DepartementView, Exception_, LineView, Slot, fold

#: Default weekly hours from the reference documents: Monday–Friday 09:30–11:30 and 14:00–16:30.
DEFAULT_SLOTS = [(wd, start, end) for wd in range(5)
                 for start, end in ((time(9, 30), time(11, 30)), (time(14, 0), time(16, 30)))]


def seed_departements(db: Session) -> int:
    """Create the 101 départements with default hours; only those missing. Returns how many."""
    existing = set(db.scalars(select(Departement.code)))
    created = 0
    for t in territories().values():
        if t.code in existing:
            continue
        dept = Departement(code=t.code, name=t.name, timezone=t.timezone,
                           phone_region=t.phone_region, holiday_subdiv=t.holiday_subdiv,
                           phone_assistance=True, ring_strategy=RingStrategy.simultaneous,
                           ring_timeout=20, voicemail_enabled=False)
        dept.slots = [OpeningSlot(weekday=wd, start=s, end=e) for wd, s, e in DEFAULT_SLOTS]
        db.add(dept)
        created += 1
    db.flush()
    return created


#: Demo entries loaded by `make run` on an empty directory. Numbers are in ARCEP's ranges
#: reserved for fiction (01 99 00 xx xx, 02 61 91 xx xx, 03 53 01 xx xx): they ring nobody.
DEMO = {
    "75": dict(lines=["01 99 00 75 01", "01 99 00 75 02"], ring_strategy="simultaneous",
               voicemail_enabled=True),
    "93": dict(lines=["01 99 00 93 01", "02 61 91 93 02"], ring_strategy="sequential",
               voicemail_enabled=True),
    "2A": dict(lines=["04 65 71 20 01"], ring_strategy="simultaneous"),
    "57": dict(lines=["03 53 01 57 01"], ring_strategy="simultaneous", voicemail_enabled=True),
    "974": dict(lines=[], phone_assistance=False, form_url="assistance.example.gouv.fr/974",
                email="assistance-974@example.gouv.fr"),
}


def load_demo(db: Session) -> list[str]:
    """Give the demo départements example (fictitious) lines; returns their codes."""
    for code, conf in DEMO.items():
        dept = db.get(Departement, code)
        set_lines(db, dept, [(n, "Ligne de démonstration (fictive)") for n in conf["lines"]])
        dept.ring_strategy = RingStrategy[conf.get("ring_strategy", "simultaneous")]
        dept.voicemail_enabled = conf.get("voicemail_enabled", False)
        dept.phone_assistance = conf.get("phone_assistance", True)
        dept.form_url = conf.get("form_url")
        dept.email = conf.get("email")
    db.flush()
    return list(DEMO)


def set_lines(db: Session, dept: Departement, numbers: list[tuple[str, str | None]]) -> None:
    """Replace a département's lines, in order; every number is validated first (see rules)."""
    normalized = list(zip(rules.check_lines([n for n, _ in numbers], dept.phone_region),
                          [checked_text(label, "libellé de ligne") for _, label in numbers]))
    db.execute(delete(Line).where(Line.departement_code == dept.code))
    db.flush()
    db.expire(dept, ["lines"])
    dept.lines = [Line(position=i, number=n, label=label, active=True)
                  for i, (n, label) in enumerate(normalized)]
    db.flush()


#: What a département code looks like ("01", "2A", "974").
_CODE = re.compile(r"[0-9][0-9AB][0-9]?")


def get_departement(db: Session, code: str) -> Departement | None:
    """The directory entry for a code (case-insensitive: "2a" is "2A"); None for anything that
    cannot be a code (no odd text, a NUL byte say, reaches the database)."""
    code = (code or "").strip().upper()
    return db.get(Departement, code) if _CODE.fullmatch(code) else None


def snapshot(db: Session, code: str) -> DepartementView | None:
    """Everything the call flow needs about a département, read in one go."""
    dept = db.scalars(
        select(Departement).where(Departement.code == code.upper())
        .options(selectinload(Departement.lines), selectinload(Departement.slots),
                 selectinload(Departement.exceptions))).one_or_none()
    if dept is None:
        return None
    rows = db.execute(select(WorkedHoliday.holiday_name, WorkedHoliday.departement_code,
                             WorkedHoliday.worked).where(
        (WorkedHoliday.departement_code.is_(None)) | (WorkedHoliday.departement_code == dept.code)))
    worked: dict[str, bool] = {}
    for name, code, is_worked in sorted(rows, key=lambda r: r[1] is not None):  # national first
        worked[name] = is_worked
    return _view(dept, worked)


def _view(dept: Departement, worked: dict[str, bool]) -> DepartementView:
    """The snapshot of a loaded département; `worked` maps holiday names to worked or not."""
    return DepartementView(
        code=dept.code, name=dept.name, timezone=dept.timezone,
        holiday_subdiv=dept.holiday_subdiv, phone_assistance=dept.phone_assistance,
        ring_strategy=dept.ring_strategy.name, ring_timeout=dept.ring_timeout,
        voicemail_enabled=dept.voicemail_enabled, form_url=dept.form_url, email=dept.email,
        lines=tuple(LineView(l.number, l.label or "") for l in dept.lines if l.active),
        slots=tuple(Slot(s.weekday, s.start, s.end) for s in dept.slots),
        exceptions=tuple(Exception_(e.kind.name, e.start_date, e.end_date, e.reason or "",
                                    e.start_time, e.end_time) for e in dept.exceptions),
        worked_holidays=frozenset(name for name, is_worked in worked.items() if is_worked),
    )


def set_worked_holiday(db: Session, holiday_name: str, departement_code: str | None = None,
                       worked: bool | None = True, *, actor=None) -> str:
    """Say whether a public holiday is worked, nationally or for one département; its name.

    Nationally, `worked` False removes the national declaration. For a département, its own
    setting wins over the national one: True worked there, False off there, None follows the
    national setting again. The name is checked against the holidays of the département (of
    any département when national), accents and case aside, and stored as the library spells it.
    With an `actor` the change is audited (a whole-settings save audits it itself).
    """
    if departement_code is not None:
        dept = get_departement(db, departement_code)
        if dept is None:
            raise DirectoryError(f"département inconnu : « {departement_code} »")
        departement_code, subdivs = dept.code, {dept.holiday_subdiv}
    else:
        subdivs = {t.holiday_subdiv for t in territories().values()}
    known = rules.known_holidays(subdivs)
    name = known.get(fold(holiday_name))
    if name is None:
        where = f"du département {departement_code}" if departement_code else "français"
        raise DirectoryError(f"« {holiday_name} » n'est pas un jour férié {where} "
                             f"(connus : {', '.join(sorted(set(known.values())))})")
    stmt = delete(WorkedHoliday).where(WorkedHoliday.holiday_name == name)
    stmt = stmt.where(WorkedHoliday.departement_code.is_(None) if departement_code is None
                      else WorkedHoliday.departement_code == departement_code)
    db.execute(stmt)
    if worked or (worked is False and departement_code is not None):
        db.add(WorkedHoliday(holiday_name=name, departement_code=departement_code,
                             worked=bool(worked)))
    db.flush()
    if actor is not None:
        state = {True: "travaillé", False: "chômé", None: "réglage national"}[worked]
        scope = f"département {departement_code}" if departement_code else "tous les départements"
        record(db, actor, entity="jour férié", departement_code=departement_code,
               summary=f"{name} : {state} ({scope})")
    return name


def all_snapshots(db: Session, since: date | None = None) -> list[DepartementView]:
    """Every département's snapshot (as the call flow sees it), in the official order, read in
    a handful of queries whatever the number of départements.

    With `since`, exceptions that ended before that day are left out: they cannot change the
    state of any instant from that day on, and past closures pile up year after year.

    The rows are read as plain tuples, not ORM objects: the overview reads every line, slot and
    exception of the directory (thousands of closures), and building an ORM object for each
    cost several times what the database does; they are run on the session's connection,
    without the ORM's row processing. Without `since`, the result equals `snapshot()` of each
    code.
    """
    db.flush()  # the statements below bypass the session's autoflush
    conn = db.connection()
    lines: dict[str, list[LineView]] = {}
    for code, number, label in conn.execute(
            select(Line.departement_code, Line.number, Line.label).where(Line.active)
            .order_by(Line.departement_code, Line.position)):
        lines.setdefault(code, []).append(LineView(number, label or ""))
    slots: dict[str, list[Slot]] = {}
    for code, weekday, start, end in conn.execute(
            select(OpeningSlot.departement_code, OpeningSlot.weekday, OpeningSlot.start,
                   OpeningSlot.end)
            .order_by(OpeningSlot.departement_code, OpeningSlot.weekday, OpeningSlot.start)):
        slots.setdefault(code, []).append(Slot(weekday, start, end))
    exceptions: dict[str, list[Exception_]] = {}
    # The kind as stored (the member's name): no enum built per row only to read its name.
    periods = (select(DateException.departement_code, type_coerce(DateException.kind, String),
                      DateException.start_date, DateException.end_date, DateException.reason,
                      DateException.start_time, DateException.end_time)
               .order_by(DateException.departement_code, DateException.start_date,
                         DateException.id))
    if since is not None:
        periods = periods.where(DateException.end_date >= since)
    for code, kind, start_date, end_date, reason, start_time, end_time in conn.execute(periods):
        exceptions.setdefault(code, []).append(
            Exception_(kind, start_date, end_date, reason or "", start_time, end_time))
    rows = conn.execute(select(WorkedHoliday.holiday_name, WorkedHoliday.departement_code,
                               WorkedHoliday.worked)).all()
    national = {name for name, code, is_worked in rows if code is None and is_worked}
    own: dict[str, dict[str, bool]] = {}
    for name, code, is_worked in rows:
        if code is not None:
            own.setdefault(code, {})[name] = is_worked
    views = []
    for dept in conn.execute(select(
            Departement.code, Departement.name, Departement.timezone,
            Departement.holiday_subdiv, Departement.phone_assistance,
            Departement.ring_strategy, Departement.ring_timeout,
            Departement.voicemail_enabled, Departement.form_url, Departement.email)):
        worked = {**{n: True for n in national}, **own.get(dept.code, {})}
        views.append(DepartementView(
            code=dept.code, name=dept.name, timezone=dept.timezone,
            holiday_subdiv=dept.holiday_subdiv, phone_assistance=dept.phone_assistance,
            ring_strategy=dept.ring_strategy.name, ring_timeout=dept.ring_timeout,
            voicemail_enabled=dept.voicemail_enabled, form_url=dept.form_url, email=dept.email,
            lines=tuple(lines.get(dept.code, ())), slots=tuple(slots.get(dept.code, ())),
            exceptions=tuple(exceptions.get(dept.code, ())),
            worked_holidays=frozenset(name for name, is_worked in worked.items() if is_worked)))
    return official_order(views, lambda v: v.code)


def national_worked_holidays(db: Session) -> list[str]:
    """Holidays declared worked in every département (unless one keeps the day off)."""
    return sorted(db.scalars(select(WorkedHoliday.holiday_name).where(
        WorkedHoliday.departement_code.is_(None), WorkedHoliday.worked)))


def add_exception(db: Session, dept: Departement, kind: str, start_date, end_date,
                  reason: str = "", start_time=None, end_time=None) -> DateException:
    """Add an exceptional closure or opening; openings need their hours."""
    rules.check_dates(start_date, end_date)
    if kind == "opening":
        rules.check_opening_hours(start_time, end_time)
    reason = rules.parse_reason(reason)
    exc = DateException(kind=ExceptionKind[kind], start_date=start_date, end_date=end_date,
                        reason=reason, start_time=start_time, end_time=end_time)
    dept.exceptions.append(exc)
    db.flush()
    return exc
