"""The « historique des sollicitations »: rows created from calls, qualified, split, added by hand.

Operations only flush; the edge (webhook, CLI command, web view) commits. Every change a person
makes (qualification, split, a row added by hand, an imported workbook) writes its audit entry
(entity « sollicitation ») itself, so the web, the API and the CLI are audited by one code path.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from audit.operations import Actor, record
from core import text as text_policy
from directory.models import Departement
from tracking import taxonomy as tax
from tracking.models import Call, Channel, Solicitation, Source

#: Crockford's base32: no I, L, O, U — references are read aloud and typed by people.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: What a reference looks like (older ones, or a workbook's, may use any letter or digit).
_REFERENCE = re.compile(r"S-[0-9A-Z]{1,14}")


class SolicitationError(ValueError):
    """A solicitation operation was refused; the message is French."""

#: Longest comment kept on a row (Excel holds at most 32,767 characters in a cell).
MAX_COMMENT = 4000
#: Most motifs one call is split into (one row each): the web form, the API and the CLI.
MAX_MOTIFS = 10


def checked_comment(comment: str | None) -> str | None:
    """A comment as stored (outer whitespace removed), or SolicitationError naming the problem."""
    if comment is None:
        return None
    try:
        comment = text_policy.check(comment, "commentaire").strip()
    except text_policy.TextRefused as exc:
        raise SolicitationError(str(exc)) from None
    if len(comment) > MAX_COMMENT:
        raise SolicitationError(f"commentaire trop long ({MAX_COMMENT} caractères au maximum)")
    return comment


def new_reference() -> str:
    """A stable, unguessable reference such as "S-7K3M9Q2XPA"."""
    return "S-" + "".join(secrets.choice(_ALPHABET) for _ in range(10))


def by_reference(db: Session, reference: str) -> Solicitation:
    """The row with this reference, or SolicitationError."""
    wanted = (reference or "").strip().upper()
    row = (db.scalars(select(Solicitation).where(Solicitation.reference == wanted)).one_or_none()
           if _REFERENCE.fullmatch(wanted) else None)  # no odd text (NUL…) reaches the database
    if row is None:
        raise SolicitationError(f"sollicitation introuvable : {reference}")
    return row


def sync_call(db: Session, call: Call) -> Solicitation | None:
    """Create the row of a call that reached a département, and keep it in step while unqualified.

    The thématique chosen in the call flow's menu is copied; the motif stays « À qualifier ».
    A test call (the simulator's) gets no row: it is never counted.
    """
    if call.departement_code is None or call.test:
        return None
    rows = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)
                      .order_by(Solicitation.id)).all()
    thematique = tax.by_key(db, call.thematique)
    if not rows:
        row = Solicitation(reference=new_reference(), departement_code=call.departement_code,
                           occurred_at=call.started_at, channel=Channel.phone_svi, call_id=call.id,
                           is_primary=True, thematique=thematique, source=Source.svi, comment="")
        db.add(row)
        db.flush()
        return row
    row = rows[0]
    if len(rows) == 1 and row.motif_id is None:  # nobody has qualified it yet
        row.departement_code = call.departement_code
        if thematique is not None:
            row.thematique = thematique
    db.flush()
    return row


TO_QUALIFY_LABEL = "À qualifier"


def _motif_label(row: Solicitation) -> str:
    """« Thématique › Motif › Sous-motif » of a row, « À qualifier » when it has no motif."""
    parts = [item.label for item in (row.thematique, row.motif, row.sous_motif) if item is not None]
    return " › ".join(parts) if parts else TO_QUALIFY_LABEL


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("oui" if value else "non")


def _qualification(rows: list[Solicitation]) -> dict[str, str]:
    """What the audit log shows of a call's qualification: each row's motif and follow-up, and
    its comment, keyed by the row's reference (the call's first row first)."""
    described = {}
    for r in rows:
        follow_up = [f"{label} : {_yes_no(value)}" for label, value in (
            ("résolu au niveau 1", r.resolved_first_level), ("escaladé", r.escalated))
            if value is not None]
        described[r.reference] = " — ".join([_motif_label(r), *follow_up])
        if r.comment:
            described[f"{r.reference}, commentaire"] = r.comment
    return described


def _audit_qualification(db: Session, actor: Actor, before: dict, rows: list[Solicitation]) -> None:
    """One entry for a change of a call's rows (added, changed or removed); none when the same
    qualification was sent again."""
    after = _qualification(rows)
    if after == before:
        return
    keys = [*after, *(key for key in before if key not in after)]
    record(db, actor, entity="sollicitation", departement_code=rows[0].departement_code,
           summary=f"{rows[0].reference} qualifiée : {len(rows)} motif(s)",
           changes={key: (before.get(key, ""), after.get(key, "")) for key in keys})


def qualify(db: Session, row: Solicitation, *, actor: Actor, thematique: str, motif: str,
            sous_motif: str | None = None, comment: str | None = None,
            resolved: bool | None = None, escalated: bool | None = None) -> Solicitation:
    """Set a row's thématique, motif and sous-motif (keys or labels) and its follow-up fields,
    audited in `actor`'s name."""
    before = _qualification(rows_of_call(db, row))
    _set_motif(db, row, thematique=thematique, motif=motif, sous_motif=sous_motif,
               comment=comment, resolved=resolved, escalated=escalated)
    _audit_qualification(db, actor, before, rows_of_call(db, row))
    return row


def _set_motif(db: Session, row: Solicitation, *, thematique: str, motif: str,
               sous_motif: str | None = None, comment: str | None = None,
               resolved: bool | None = None, escalated: bool | None = None) -> Solicitation:
    """Set a row's motif and follow-up fields (no audit: the public operations write it)."""
    comment = checked_comment(comment)
    try:
        row.thematique, row.motif, row.sous_motif = tax.resolve(db, thematique, motif, sous_motif)
    except tax.TaxonomyError as exc:
        raise SolicitationError(str(exc)) from None
    if comment is not None:
        row.comment = comment
    if resolved is not None:
        row.resolved_first_level = resolved
    if escalated is not None:
        row.escalated = escalated
    db.flush()
    return row


def rows_of_call(db: Session, row: Solicitation) -> list[Solicitation]:
    """The rows of `row`'s call, its first (primary) row first; just `row` without a call."""
    if row.call_id is None:
        return [row]
    rows = db.scalars(select(Solicitation).where(Solicitation.call_id == row.call_id)
                      .order_by(Solicitation.id)).all()
    return sorted(rows, key=lambda r: (not r.is_primary, r.id))


def state_token(db: Session, row: Solicitation) -> str:
    """A fingerprint of the qualification of `row`'s call: a form sent from an older state is
    refused (someone qualified the call meanwhile)."""
    state = [(r.id, r.thematique_id, r.motif_id, r.sous_motif_id, r.comment,
              r.resolved_first_level, r.escalated) for r in rows_of_call(db, row)]
    return hashlib.sha256(repr(state).encode()).hexdigest()[:24]


def split(db: Session, row: Solicitation, motifs: list[tuple[str, str, str | None]], *,
          actor: Actor) -> list[Solicitation]:
    """One row per motif for the same call: `row` takes the first, new rows the others (a row
    without a call, an email or a form, takes one motif: a second subject is another row)."""
    if len(motifs) < 2:
        raise SolicitationError("une répartition demande au moins deux motifs")
    _check_motif_count(row, motifs)
    before = _qualification(rows_of_call(db, row))
    _set_motif(db, row, thematique=motifs[0][0], motif=motifs[0][1], sous_motif=motifs[0][2])
    rows = [row]
    for them, motif, sous in motifs[1:]:
        extra = Solicitation(reference=new_reference(), departement_code=row.departement_code,
                             occurred_at=row.occurred_at, channel=row.channel, call_id=row.call_id,
                             is_primary=False, source=row.source, comment="")
        db.add(extra)
        rows.append(_set_motif(db, extra, thematique=them, motif=motif, sous_motif=sous))
    db.flush()
    _audit_qualification(db, actor, before, rows_of_call(db, row))
    return rows


class AmbiguousTime(SolicitationError):
    """A wall-clock time that does not exist, or exists twice, in the département's zone."""


def local_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock time (naive) names in `zone`; refused when that time never
    happens there (the hour skipped in spring) or happens twice (the hour repeated in autumn)
    rather than guessed."""
    local = wall.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        raise AmbiguousTime("cette heure n'existe pas dans le fuseau du département (passage à "
                            "l'heure d'été)")
    if local.utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset():
        raise AmbiguousTime("cette heure existe deux fois dans le fuseau du département (passage "
                            "à l'heure d'hiver)")
    return local


def channel_from(text: str) -> Channel:
    """A channel from its French label or its name."""
    wanted = text.strip().casefold()
    for channel in Channel:
        if wanted in (channel.name.casefold(), channel.value.casefold()):
            return channel
    raise SolicitationError(f"canal inconnu : « {text} » (attendu : "
                            + ", ".join(c.value for c in Channel) + ")")


def add(db: Session, *, departement: str, occurred_at: datetime, channel: Channel,
        thematique: str | None = None, motif: str | None = None, sous_motif: str | None = None,
        comment: str = "", resolved: bool | None = None, escalated: bool | None = None,
        source: Source = Source.manual, fingerprint: str | None = None,
        actor: Actor) -> Solicitation:
    """Add a row for a call that did not go through the SVI, an email, a form…, audited in
    `actor`'s name."""
    comment = checked_comment(comment) or ""
    if occurred_at.tzinfo is None:
        raise SolicitationError("la date doit porter son fuseau horaire")
    place = db.get(Departement, departement)
    if place is None:
        raise SolicitationError(f"département inconnu : {departement}")
    row = Solicitation(reference=new_reference(), departement_code=departement,
                       occurred_at=occurred_at, channel=channel, is_primary=True, source=source,
                       comment=comment or "", resolved_first_level=resolved, escalated=escalated,
                       fingerprint=fingerprint)
    db.add(row)
    if thematique and motif:
        _set_motif(db, row, thematique=thematique, motif=motif, sous_motif=sous_motif)
    elif thematique:
        try:
            row.thematique = tax.resolve(db, thematique)[0]
        except tax.TaxonomyError as exc:
            raise SolicitationError(str(exc)) from None
    db.flush()
    local = occurred_at.astimezone(ZoneInfo(place.timezone))
    record(db, actor, entity="sollicitation", departement_code=departement,
           summary=f"{row.reference} ajoutée ({channel.value})",
           changes={"Date (heure locale)": (None, f"{local:%d/%m/%Y %H:%M}"),
                    **{name: ("", value) for name, value in _qualification([row]).items()}})
    return row


def _check_motif_count(row: Solicitation, motifs: list) -> None:
    """A call takes at most MAX_MOTIFS motifs; a row without a call (an email, a form) one."""
    if row.call_id is None and len(motifs) > 1:
        raise SolicitationError("une sollicitation hors SVI porte un seul motif : ajoutez une "
                                "autre sollicitation pour un autre sujet")
    if len(motifs) > MAX_MOTIFS:
        raise SolicitationError(f"un appel porte {MAX_MOTIFS} motifs au plus")


class StaleQualification(SolicitationError):
    """The call was qualified since the form (or the API client) read it; nothing was written."""


def lock_call(db: Session, row: Solicitation) -> None:
    """Serialize qualifications of `row`'s call: a no-op update of its first row takes that
    row's lock on PostgreSQL and the write lock on SQLite; what is read after it is current."""
    first = rows_of_call(db, row)[0]
    db.execute(update(Solicitation).where(Solicitation.id == first.id)
               .values(updated_at=Solicitation.updated_at))
    db.expire_all()


def qualify_motifs(db: Session, row: Solicitation, motifs: list[tuple[str, str, str | None]], *,
                   comment: str | None = None, resolved: bool | None = None,
                   escalated: bool | None = None, expected_state: str | None = None,
                   actor: Actor) -> list[Solicitation]:
    """Make the rows of `row`'s call exactly `motifs`, one row per motif: the call's first row
    takes the first, its other rows the next ones (created or removed as needed), so sending
    the same qualification twice changes nothing. The comment goes on the first row, the
    follow-up (resolved, escalated) on every row. Returns the rows, the call's first row first.

    The call is locked first (two qualifications at once are applied one after the other);
    with `expected_state` (a `state_token` read earlier), a call qualified meanwhile is refused
    with StaleQualification. A row without a call (an email, a form) takes one motif: a
    second subject is a second solicitation."""
    if not motifs:
        raise SolicitationError("indiquez au moins un motif")
    resolved_ids = []
    for them, motif, sous in motifs:
        try:
            found = tax.resolve(db, them, motif, sous)
        except tax.TaxonomyError as exc:
            raise SolicitationError(str(exc)) from None
        resolved_ids.append(tuple(item.id if item is not None else None for item in found))
    if len(set(resolved_ids)) != len(resolved_ids):
        raise SolicitationError("motif en double : indiquez chaque motif une seule fois")
    lock_call(db, row)
    if expected_state is not None and expected_state != state_token(db, row):
        raise StaleQualification("cet appel a été qualifié entre-temps : rien n'a été enregistré")
    _check_motif_count(row, motifs)
    group = rows_of_call(db, row)
    before = _qualification(group)
    first_row, others = group[0], group[1:]
    rows = [first_row]
    for index, (them, motif, sous) in enumerate(motifs[1:]):
        if index < len(others):
            extra = others[index]
        else:
            extra = Solicitation(reference=new_reference(), departement_code=row.departement_code,
                                 occurred_at=row.occurred_at, channel=row.channel,
                                 call_id=row.call_id, is_primary=False, source=row.source,
                                 comment="")
            db.add(extra)
        rows.append(_set_motif(db, extra, thematique=them, motif=motif, sous_motif=sous))
    for surplus in others[len(motifs) - 1:]:
        db.delete(surplus)
    first = motifs[0]
    _set_motif(db, first_row, thematique=first[0], motif=first[1], sous_motif=first[2],
            comment=comment, resolved=resolved, escalated=escalated)
    for extra in rows[1:]:
        if resolved is not None:
            extra.resolved_first_level = resolved
        if escalated is not None:
            extra.escalated = escalated
    db.flush()
    _audit_qualification(db, actor, before, rows)
    return rows
