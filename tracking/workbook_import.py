"""Import a département's workbook filled by hand: qualification changes and rows added by hand.

All or nothing: every row of every « Historique » sheet is validated first; errors name the
sheet, the row and the column. Importing the same file twice changes nothing: existing rows
are recognised by their reference, rows added by hand by a fingerprint of their content.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, selectinload

from audit.models import AuditEntry
from audit.operations import Actor, record
from core import text as text_policy
from core.spreadsheets import (EARLIEST_YEAR, LATEST_YEAR, MAX_CELLS, MAX_STRINGS, NOT_WORKBOOK,
                               ReadBudget, UnreadableFile, check_size, is_plausible_year,
                               open_untrusted_workbook, sheet_rows)
from directory.models import Departement
from tracking.columns import HEADERS, INDEX, NO, TO_QUALIFY, YES
from tracking.models import Channel, Motif, Solicitation, Source, Thematique
from tracking.solicitations import MAX_COMMENT, AmbiguousTime, local_instant, new_reference

MAX_FILE_BYTES = 50 * 1024 * 1024
#: A genuine export of 200,000 rows unzips to 131 MB (measured): twice that leaves room for
#: long comments, and keeps a hostile file's scan to seconds.
MAX_UNZIPPED_BYTES = 256 * 1024 * 1024
MAX_ROWS = 200_000
#: Rows read across all sheets, blank ones and headers included.
MAX_READ_ROWS = MAX_ROWS + 50_000
SHEET_PREFIX = "Historique"
_TEXT_DATE_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y", "%Y-%m-%d %H:%M",
                      "%Y-%m-%dT%H:%M", "%Y-%m-%d")


@dataclass(frozen=True)
class CellError:
    """A refused cell, named as a spreadsheet user sees it."""

    sheet: str
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"feuille « {self.sheet} », ligne {self.row}, colonne « {self.column} » : {self.message}"


class ImportRefused(Exception):
    """Nothing was imported; `errors` (or the message) say why, in French."""

    def __init__(self, message: str, errors: list[CellError] | None = None):
        super().__init__(message)
        self.errors = errors or []

    def lines(self) -> list[str]:
        """The message, then one line per error."""
        return [str(self)] + [str(e) for e in self.errors]


@dataclass
class _Plan:
    updates: list[tuple[Solicitation, dict]] = field(default_factory=list)
    additions: list[dict] = field(default_factory=list)
    unchanged: int = 0
    #: The updated rows' values before the import, to undo committed batches on failure.
    previous: list[dict] = field(default_factory=list)


def read_rows(path: str | Path):
    """Yield (sheet title, row number, cells) of every Historique sheet; ImportRefused if unreadable."""
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise ImportRefused("seuls les classeurs .xlsx sont acceptés")
    try:
        check_size(path, MAX_FILE_BYTES)
        wb = open_untrusted_workbook(path, max_unzipped_bytes=MAX_UNZIPPED_BYTES,
                                     max_strings=MAX_STRINGS, max_cells=MAX_CELLS)
    except UnreadableFile as exc:
        raise ImportRefused(str(exc)) from None
    try:
        sheets = [ws for ws in wb.worksheets if ws.title.startswith(SHEET_PREFIX)]
        if not sheets:
            raise ImportRefused("aucune feuille « Historique des sollicitations » dans ce classeur")
        budget = ReadBudget(MAX_READ_ROWS)
        for ws in sheets:
            rows = (values for _, values in sheet_rows(ws, max_col=len(HEADERS), budget=budget))
            header = [("" if v is None else str(v).strip()) for v in next(rows, ())]
            while header and not header[-1]:
                header.pop()
            if tuple(header) != HEADERS:
                missing = [h for h in HEADERS if h not in header]
                raise ImportRefused(f"feuille « {ws.title} » : première ligne incorrecte"
                                    + (f" (colonnes manquantes : {', '.join(missing)})" if missing else "")
                                    + ". Colonnes attendues : " + ", ".join(HEADERS))
            for number, values in enumerate(rows, start=2):
                cells = list(values[:len(HEADERS)]) + [None] * (len(HEADERS) - len(values))
                if any(v not in (None, "") for v in cells):
                    yield ws.title, number, cells
    except ImportRefused:
        raise
    except UnreadableFile as exc:
        raise ImportRefused(f"feuille « {ws.title} » : {exc}") from None
    except Exception as exc:
        raise ImportRefused(NOT_WORKBOOK) from exc
    finally:
        wb.close()


class _Checker:
    """Validates one row's cells against the taxonomy and the directory."""

    def __init__(self, db: Session):
        thems = db.scalars(select(Thematique).options(
            selectinload(Thematique.motifs).selectinload(Motif.sous_motifs))).all()
        self.thematiques = {t.label.casefold(): t for t in thems}
        self.zones = {code: ZoneInfo(tz) for code, tz in db.execute(
            select(Departement.code, Departement.timezone))}
        self.channels = {c.value.casefold(): c for c in Channel}

    def text(self, cells, header) -> str:
        value = cells[INDEX[header]]
        return "" if value is None else text_policy.newlines(str(value)).strip()

    def yes_no(self, cells, header, errors) -> bool | None:
        value = self.text(cells, header).casefold()
        if not value:
            return None
        if value in (YES, NO):
            return value == YES
        errors.append((header, f"« {value} » : attendu « oui » ou « non »"))
        return None

    def when(self, cells, code, errors) -> datetime | None:
        value = cells[INDEX["Date et heure"]]
        if isinstance(value, datetime):
            local = value
        elif isinstance(value, date):
            local = datetime.combine(value, time(0))
        else:
            local = None
            for fmt in _TEXT_DATE_FORMATS:
                try:
                    local = datetime.strptime(str(value or "").strip(), fmt)
                    break
                except ValueError:
                    continue
            if local is None:
                errors.append(("Date et heure", f"date illisible : « {value or ''} » (attendu JJ/MM/AAAA HH:MM)"))
                return None
        if not is_plausible_year(local.year):
            errors.append(("Date et heure", f"date hors des années {EARLIEST_YEAR} à {LATEST_YEAR} : "
                                            f"« {local.day:02d}/{local.month:02d}/{local.year:04d} »"))
            return None
        return local.replace(tzinfo=self.zones.get(code, ZoneInfo("Europe/Paris")))

    def taxonomy(self, cells, errors):
        them_label, motif_label = self.text(cells, "Thématique"), self.text(cells, "Motif")
        sous_label = self.text(cells, "Sous-motif")
        if not them_label:
            errors.append(("Thématique", "obligatoire"))
            return None
        if not motif_label:
            errors.append(("Motif", "obligatoire"))
            return None
        if them_label == TO_QUALIFY:
            if motif_label != TO_QUALIFY or sous_label:
                errors.append(("Motif", "une ligne « À qualifier » n'a ni motif ni sous-motif"))
            return (None, None, None)
        them = self.thematiques.get(them_label.casefold())
        if them is None:
            errors.append(("Thématique", f"« {them_label} » n'est pas dans la liste"))
            return None
        if motif_label == TO_QUALIFY:
            if sous_label:
                errors.append(("Sous-motif", "pas de sous-motif sans motif"))
                return None
            return (them, None, None)
        motif = next((m for m in them.motifs if m.label.casefold() == motif_label.casefold()), None)
        if motif is None:
            errors.append(("Motif", f"« {motif_label} » n'est pas un motif de « {them.label} »"))
            return None
        sous = None
        if sous_label:
            sous = next((s for s in motif.sous_motifs if s.label.casefold() == sous_label.casefold()), None)
            if sous is None:
                errors.append(("Sous-motif", f"« {sous_label} » n'est pas un sous-motif de « {motif.label} »"))
                return None
        return (them, motif, sous)


def _as_exported(value):
    """A stored value as an export writes it and this import reads it back (comments are cleaned,
    their line breaks read as LF, and stripped on the way): an unmodified export then changes
    nothing."""
    return text_policy.newlines(text_policy.clean(value)).strip() if isinstance(value, str) else value


def _fingerprint(values: dict, occurrence: int) -> str:
    key = "|".join(str(values[k]) for k in ("occurred_at", "departement_code", "channel",
                                            "thematique_id", "motif_id", "sous_motif_id", "comment"))
    return hashlib.sha256(f"{key}|{occurrence}".encode()).hexdigest()


def plan(db: Session, rows, allowed: set[str] | None = None) -> _Plan:
    """Validate every row and work out what would change; ImportRefused lists every error.

    With `allowed`, only rows of those départements may be imported (a referent's): any other
    row, or an existing row of another département, is refused by name."""
    check, result, errors = _Checker(db), _Plan(), []
    existing = {}
    refs = set()
    parsed = []
    for count, (sheet, number, cells) in enumerate(rows, start=1):
        if count > MAX_ROWS:
            raise ImportRefused(f"trop de lignes ({MAX_ROWS} au maximum)")
        parsed.append((sheet, number, cells))
        ref = check.text(cells, "Référence")
        if ref:
            refs.add(ref.upper())
    for chunk in [sorted(refs)[i:i + 500] for i in range(0, len(refs), 500)]:
        existing.update({s.reference: s for s in db.scalars(
            select(Solicitation).where(Solicitation.reference.in_(chunk)))})
    seen_refs, occurrences = set(), Counter()
    for sheet, number, cells in parsed:
        row_errors: list[tuple[str, str]] = [
            (header, "caractère invisible ou interdit (" + text_policy.describe(char) + ")")
            for header, value in zip(HEADERS, cells)
            if isinstance(value, str) and (char := text_policy.forbidden(value))]
        if row_errors:  # nothing else of this row is worth reading
            errors.extend(CellError(sheet, number, column, message) for column, message in row_errors)
            continue
        ref = check.text(cells, "Référence").upper()
        code = check.text(cells, "Département").upper()
        if code and code not in check.zones:
            row_errors.append(("Département", f"département inconnu : « {code} »"))
        elif not code:
            row_errors.append(("Département", "obligatoire"))
        elif allowed is not None and code not in allowed:
            row_errors.append(("Département", f"vous ne pouvez pas importer de ligne du "
                                              f"département « {code} »"))
        taxo = check.taxonomy(cells, row_errors)
        resolved = check.yes_no(cells, "Résolu au niveau 1", row_errors)
        escalated = check.yes_no(cells, "Escaladé", row_errors)
        comment = check.text(cells, "Commentaire")
        if len(comment) > MAX_COMMENT:
            row_errors.append(("Commentaire", f"trop long ({MAX_COMMENT} caractères au maximum)"))
        if ref:
            row = existing.get(ref)
            if row is None:
                row_errors.append(("Référence", f"référence inconnue : « {ref} » (laissez-la vide pour une nouvelle ligne)"))
            elif allowed is not None and row.departement_code not in allowed:
                row_errors.append(("Référence", f"« {ref} » est une ligne du département "
                                                f"« {row.departement_code} » : vous ne pouvez pas la modifier"))
            elif ref in seen_refs:
                row_errors.append(("Référence", f"référence en double : « {ref} »"))
            seen_refs.add(ref)
            if row is not None and not row_errors:
                _check_fixed(check, cells, row, code, row_errors)
            if row is not None and not row_errors and taxo is not None:
                changes = {"thematique": taxo[0], "motif": taxo[1], "sous_motif": taxo[2],
                           "comment": comment, "resolved_first_level": resolved, "escalated": escalated}
                if all(_as_exported(getattr(row, k)) == v for k, v in changes.items()):
                    result.unchanged += 1
                else:
                    result.updates.append((row, changes))
        else:
            channel_text = check.text(cells, "Canal")
            channel = check.channels.get(channel_text.casefold())
            if channel is None:
                row_errors.append(("Canal", f"« {channel_text} » n'est pas dans la liste" if channel_text else "obligatoire"))
            elif channel is Channel.phone_svi:
                row_errors.append(("Canal", "les appels du SVI sont créés par le service : choisissez un autre canal"))
            occurred_at = check.when(cells, code, row_errors)
            if occurred_at is not None:  # a new row's hour must name one instant
                try:
                    local_instant(occurred_at.replace(tzinfo=None), occurred_at.tzinfo)
                except AmbiguousTime as exc:
                    row_errors.append(("Date et heure", f"{exc} : indiquez une heure voisine"))
            if not row_errors and taxo is not None:
                values = dict(occurred_at=occurred_at, departement_code=code, channel=channel,
                              thematique_id=taxo[0] and taxo[0].id, motif_id=taxo[1] and taxo[1].id,
                              sous_motif_id=taxo[2] and taxo[2].id, comment=comment,
                              resolved_first_level=resolved, escalated=escalated)
                content = _fingerprint(values, 0)
                occurrences[content] += 1
                values["fingerprint"] = _fingerprint(values, occurrences[content])
                result.additions.append(values)
        errors.extend(CellError(sheet, number, column, message) for column, message in row_errors)
    if errors:
        raise ImportRefused(f"Import refusé, rien n'a été modifié : {len(errors)} erreur(s)", errors)
    known = set(db.scalars(select(Solicitation.fingerprint).where(
        Solicitation.fingerprint.in_([a["fingerprint"] for a in result.additions]))))
    fresh = [a for a in result.additions if a["fingerprint"] not in known]
    result.unchanged += len(result.additions) - len(fresh)
    result.additions = fresh
    return result


def _check_fixed(check: _Checker, cells, row: Solicitation, code: str, errors: list) -> None:
    """An existing row is recognised by its reference: only its qualification may change. A
    changed département, channel or date is refused by name, never silently ignored (an empty
    channel or date cell is not a change)."""
    if code != row.departement_code:
        errors.append(("Département", f"une ligne existante garde son département "
                                      f"(« {row.departement_code} ») : remettez-le"))
    channel_text = check.text(cells, "Canal")
    if channel_text and check.channels.get(channel_text.casefold()) is not row.channel:
        errors.append(("Canal", f"une ligne existante garde son canal (« {row.channel.value} ») : "
                                "remettez-le"))
    if cells[INDEX["Date et heure"]] in (None, ""):  # left empty: nothing to compare
        return
    at = check.when(cells, row.departement_code, errors)
    if at is not None:
        local = row.occurred_at.astimezone(at.tzinfo)
        if at.replace(tzinfo=None, second=0, microsecond=0) != local.replace(
                tzinfo=None, second=0, microsecond=0):
            errors.append(("Date et heure", "une ligne existante garde sa date : remettez "
                                            f"« {local:%d/%m/%Y %H:%M} »"))


#: Rows written per transaction when the edge commits by batches: each holds the write lock
#: for a few tens of milliseconds, so calls keep being recorded during a long import.
APPLY_BATCH = 2000


def _columns(changes: dict) -> dict:
    """A qualification change as column values (taxonomy entries by id)."""
    taxonomy = {"thematique", "motif", "sous_motif"}
    return {(f"{name}_id" if name in taxonomy else name):
            (value.id if name in taxonomy and value is not None else value)
            for name, value in changes.items()}


def _apply_batches(db: Session, result: _Plan):
    """Write the plan with bulk statements, a batch at a time; yields after each flushed batch."""
    updates = [dict(id=row.id, **_columns(changes)) for row, changes in result.updates]
    for start in range(0, len(updates), APPLY_BATCH):
        db.execute(update(Solicitation), updates[start:start + APPLY_BATCH])
        db.flush()
        yield
    additions = [dict(reference=new_reference(), is_primary=True, source=Source.workbook, **values)
                 for values in result.additions]
    for start in range(0, len(additions), APPLY_BATCH):
        db.execute(insert(Solicitation), additions[start:start + APPLY_BATCH])
        db.flush()
        yield


def _revert(db: Session, result: _Plan, entries: list[int]) -> None:
    """Undo what batches already committed: rows added are deleted, rows updated restored, the
    import's audit entries removed."""
    db.execute(delete(AuditEntry).where(AuditEntry.id.in_(entries)))
    fingerprints = [values["fingerprint"] for values in result.additions]
    for start in range(0, len(fingerprints), 500):
        db.execute(delete(Solicitation).where(
            Solicitation.fingerprint.in_(fingerprints[start:start + 500])))
    if result.previous:
        db.execute(update(Solicitation), result.previous)
    db.flush()


def import_file(db: Session, path: str | Path, *, actor: Actor,
                commit: Callable[[], None] | None = None, allowed: set[str] | None = None) -> str:
    """Validate then apply a workbook; returns a French summary, also written to the audit log
    in `actor`'s name (one entry per import, per département it changed).

    Without `commit`, everything is only flushed (the edge commits once). With it, the edge's
    commit is called after each batch of APPLY_BATCH rows, so that no transaction holds the
    write lock for long; should a batch fail, the batches already committed are undone: the
    import stays all or nothing. (Were the process killed midway, importing the same file
    again completes it: rows are recognised by reference and fingerprint.)
    """
    result = plan(db, read_rows(path), allowed)
    result.previous = [dict(id=row.id, thematique_id=row.thematique_id, motif_id=row.motif_id,
                            sous_motif_id=row.sous_motif_id, comment=row.comment,
                            resolved_first_level=row.resolved_first_level,
                            escalated=row.escalated) for row, _ in result.updates]
    if commit is None:
        _audit(db, actor, result)
        for _ in _apply_batches(db, result):
            pass
    else:
        commit()  # validation only read: nothing is held while the batches run
        entries = _audit(db, actor, result)  # committed with the first batch, undone with it
        try:
            for _ in _apply_batches(db, result):
                commit()
        except BaseException:
            db.rollback()
            _revert(db, result, entries)
            commit()
            raise
    db.expire_all()
    return (f"Import terminé : {len(result.additions)} ligne(s) ajoutée(s), "
            f"{len(result.updates)} mise(s) à jour, {result.unchanged} inchangée(s).")


def _audit(db: Session, actor: Actor, result: _Plan) -> list[int]:
    """One audit entry per département the import changes (rows added and updated), written
    before the rows so that no committed batch is ever without it; their ids."""
    added = Counter(values["departement_code"] for values in result.additions)
    updated = Counter(row.departement_code for row, _ in result.updates)
    entries = [record(db, actor, entity="sollicitation", departement_code=code,
                      summary=f"classeur importé : {added[code]} ligne(s) ajoutée(s), "
                              f"{updated[code]} mise(s) à jour",
                      changes={"Lignes ajoutées": (0, added[code]),
                               "Lignes mises à jour": (0, updated[code])})
               for code in sorted(set(added) | set(updated))]
    db.flush()
    return [entry.id for entry in entries]
