"""« Mes appels »: the solicitations and calls of some départements, newest first, a page at a
time, and one call's timeline in plain French.

Pages are cut by keyset on (occurred_at, id), never by OFFSET: the cost of a page does not grow
with its depth, and a row recorded meanwhile does not shift the pages already cut. Every query
is restricted in SQL to the départements the caller passes (the edge passes the user's).
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, or_, select
from sqlalchemy.orm import Session, aliased

from core.spreadsheets import is_plausible_year
from directory.models import Departement
from tracking.models import (Call, CallEvent, CallLeg, Channel, Motif, Outcome, Solicitation,
                             SousMotif, Thematique)

#: Rows per page.
PAGE_SIZE = 50


@dataclass(frozen=True)
class Filters:
    """What the list is narrowed to; None (or False) means no narrowing on that field."""

    start: date | None = None  # local date, inclusive
    end: date | None = None  # local date, inclusive
    departement: str | None = None
    outcome: Outcome | None = None
    thematique: str | None = None  # key
    to_qualify: bool = False
    channel: Channel | None = None


@dataclass(frozen=True)
class Row:
    """One line of the list, as the page shows it."""

    reference: str
    local_at: datetime
    departement: str
    caller: str | None
    channel: Channel
    outcome: Outcome | None
    wait_seconds: int | None
    talk_seconds: int | None
    thematique: str | None
    motif: str | None
    sous_motif: str | None
    call_id: int | None
    is_primary: bool
    comment: str


@dataclass
class Page:
    """A page of rows and the cursor of the next one (None on the last page)."""

    rows: list[Row] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(occurred_at: datetime, row_id: int) -> str:
    """An opaque cursor for "rows strictly older than this one"."""
    raw = f"{occurred_at.astimezone(UTC).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The (instant, id) a cursor names, or None when it is absent or malformed."""
    if not cursor or len(cursor) > 100:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        instant, row_id = raw.split("|")
        at, number = datetime.fromisoformat(instant), int(row_id)
        if at.tzinfo is None or not is_plausible_year(at.year) or not 0 < number < 2**31:
            return None
        return at.astimezone(UTC), number
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        return None


def zones(db: Session) -> dict[str, str]:
    """Every département's timezone name, by code."""
    return dict(db.execute(select(Departement.code, Departement.timezone)).all())


def _period_clause(codes: list[str] | None, timezones: dict[str, str], start: date | None,
                   end: date | None):
    """Rows whose local date is within [start, end], in each département's timezone.

    One UTC range covers every timezone of the scope (the index on `occurred_at`, or on the
    département and `occurred_at`, walks it newest first and stops after a page); when the
    scope spans several timezones, a CASE then keeps each row within its own timezone's range.
    Not an OR of one range per timezone: SQLite would plan each branch apart, then collect and
    sort every row of the period before returning the first page.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for code, tz in timezones.items():
        if codes is None or code in codes:
            groups[tz].append(code)
    if not groups:
        return Solicitation.id.is_(None)
    lows = {tz: datetime.combine(start, time(0), ZoneInfo(tz)).astimezone(UTC)
            for tz in groups} if start is not None else {}
    highs = {tz: datetime.combine(end + timedelta(days=1), time(0), ZoneInfo(tz)).astimezone(UTC)
             for tz in groups} if end is not None else {}

    def bounds(tz: str | None) -> list:
        low = lows.get(tz) if tz else min(lows.values(), default=None)
        high = highs.get(tz) if tz else max(highs.values(), default=None)
        return ([Solicitation.occurred_at >= low] if low is not None else []) + (
            [Solicitation.occurred_at < high] if high is not None else [])

    clauses = bounds(None)
    if len(groups) > 1:
        biggest = max(groups, key=lambda tz: len(groups[tz]))
        clauses.append(case(*[(Solicitation.departement_code.in_(group), and_(*bounds(tz)))
                              for tz, group in groups.items() if tz != biggest],
                            else_=and_(*bounds(biggest))))
    return and_(*clauses)


def list_page(db: Session, codes: list[str] | None, filters: Filters, cursor: str | None = None,
              size: int | None = None) -> Page:
    """A page of rows of the départements `codes` (None: every département), newest first,
    starting after `cursor` (PAGE_SIZE rows unless told)."""
    size = size or PAGE_SIZE
    if codes is not None and filters.departement is not None:
        codes = [c for c in codes if c == filters.departement]
    elif filters.departement is not None:
        codes = [filters.departement]
    sm = aliased(SousMotif)
    stmt = (select(Solicitation.reference, Solicitation.occurred_at, Solicitation.departement_code,
                   Call.caller_masked, Solicitation.channel, Call.outcome, Call.wait_seconds,
                   Call.talk_seconds, Thematique.label, Motif.label, sm.label, Solicitation.call_id,
                   Solicitation.is_primary, Solicitation.comment, Solicitation.id)
            .outerjoin(Call, Call.id == Solicitation.call_id)
            .outerjoin(Thematique, Thematique.id == Solicitation.thematique_id)
            .outerjoin(Motif, Motif.id == Solicitation.motif_id)
            .outerjoin(sm, sm.id == Solicitation.sous_motif_id)
            .order_by(Solicitation.occurred_at.desc(), Solicitation.id.desc())
            .limit(size + 1))
    if codes is not None:
        if not codes:
            return Page()
        stmt = stmt.where(Solicitation.departement_code.in_(codes))
    timezones = zones(db)
    if filters.start is not None or filters.end is not None:
        stmt = stmt.where(_period_clause(codes, timezones, filters.start, filters.end))
    if filters.outcome is not None:
        stmt = stmt.where(Call.outcome == filters.outcome)
    if filters.thematique:
        stmt = stmt.where(Thematique.key == filters.thematique)
    if filters.to_qualify:
        stmt = stmt.where(Solicitation.motif_id.is_(None))
    if filters.channel is not None:
        stmt = stmt.where(Solicitation.channel == filters.channel)
    after = decode_cursor(cursor)
    if after is not None:
        at, row_id = after
        # The same rows as the OR alone; the bound lets the index start at the cursor instead
        # of walking every newer row first.
        stmt = stmt.where(Solicitation.occurred_at <= at,
                          or_(Solicitation.occurred_at < at,
                              and_(Solicitation.occurred_at == at, Solicitation.id < row_id)))
    found = db.execute(stmt).all()
    page = Page()
    for (ref, at, code, caller, channel, outcome, wait, talk, them, motif, sous, call_id,
         primary, comment, row_id) in found[:size]:
        page.rows.append(Row(ref, at.astimezone(ZoneInfo(timezones.get(code, "Europe/Paris"))),
                             code, caller, channel, outcome, wait, talk, them, motif, sous,
                             call_id, primary, comment or ""))
    if len(found) > size:
        last = found[size - 1]
        page.next_cursor = encode_cursor(last[1], last[-1])
    return page


def rows_of(db: Session, row: Solicitation) -> list[Solicitation]:
    """Every row of the same call (just `row` for a solicitation without a call), oldest first."""
    if row.call_id is None:
        return [row]
    return list(db.scalars(select(Solicitation).where(Solicitation.call_id == row.call_id)
                           .order_by(Solicitation.id)))


# --- timeline --------------------------------------------------------------------------------

#: The call flow's steps (callflows/main.yaml) as people name them.
STEP_LABELS = {
    "welcome": "message d'accueil",
    "returning": "proposition du dernier département appelé",
    "departement": "saisie du numéro de département",
    "corsica": "choix entre Corse-du-Sud et Haute-Corse",
    "confirm": "confirmation du département",
    "motif": "choix de la thématique",
    "route": "orientation vers l'assistance du département",
    "dial": "mise en relation avec un référent",
    "all_busy": "message « toutes les lignes sont occupées »",
    "closed": "message de fermeture",
    "voicemail": "messagerie vocale",
    "no_phone_assistance": "message « pas d'assistance téléphonique »",
    "invalid_goodbye": "message « département invalide »",
    "form_goodbye": "orientation vers le formulaire en ligne",
    "accepted": "le référent a accepté l'appel",
    "declined": "le référent a refusé l'appel",
}
#: Twilio statuses of a call or a dialled line, in French.
STATUS_LABELS = {
    "queued": "en file d'attente", "initiated": "lancé", "ringing": "sonnerie",
    "in-progress": "en cours", "answered": "décroché", "completed": "terminé",
    "busy": "occupé", "no-answer": "pas de réponse", "failed": "échec", "canceled": "annulé",
}
CLOSED_REASONS = {"outside_hours": "en dehors des horaires", "holiday": "jour férié",
                  "closure": "fermeture exceptionnelle"}


def step_label(step: str | None) -> str:
    """A flow step as people name it (its id when unknown)."""
    return STEP_LABELS.get(step or "", f"étape « {step} »" if step else "étape inconnue")


def duration(seconds: int | None) -> str:
    """Seconds as "2 min 05 s" ("" when unknown)."""
    if seconds is None:
        return ""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


@dataclass(frozen=True)
class Moment:
    """One line of a call's timeline: when (local time), what, and its kind (for styling)."""

    at: datetime
    text: str
    kind: str = "step"  # step | dial | end


def _event_text(event: CallEvent) -> str:
    data = event.data or {}
    if event.kind == "step":
        text = f"Étape : {step_label(event.step)}"
        if data.get("Digits"):
            text += f", touches tapées « {data['Digits']} »"
        if data.get("_reached") and data["_reached"] != event.step:
            text += f" → {step_label(data['_reached'])}"
        if data.get("DialCallStatus"):
            text += f" (résultat de la mise en relation : {STATUS_LABELS.get(data['DialCallStatus'], data['DialCallStatus'])})"
        return text
    if event.kind == "status":
        status = data.get("CallStatus", "")
        text = f"Statut de l'appel : {STATUS_LABELS.get(status, status or 'inconnu')}"
        if data.get("CallDuration"):
            text += f" (durée totale {duration(int(data['CallDuration']) if str(data['CallDuration']).isdigit() else None)})"
        return text
    if event.kind == "leg-status":
        status = data.get("CallStatus") or data.get("DialCallStatus") or ""
        who = data.get("To") or data.get("Called") or "une ligne"
        return f"Ligne {who} : {STATUS_LABELS.get(status, status or 'statut inconnu')}"
    if event.kind == "whisper":
        return STEP_LABELS.get(event.step or "", "Annonce de l'appel au référent").capitalize()
    if event.kind == "error":
        return "Erreur technique : l'appelant a entendu le message d'excuse"
    if event.kind == "recording":
        return "Message vocal enregistré"
    if event.kind == "purged":
        return "Détail effacé (durée de conservation dépassée)"
    return f"Événement « {event.kind} »"


def timeline(db: Session, call: Call, timezone: str) -> list[Moment]:
    """What happened on a call, in order and in plain French: each webhook, each dialled line
    and its result, and why it ended."""
    zone = ZoneInfo(timezone)
    moments = [Moment(call.started_at.astimezone(zone),
                      f"Appel reçu de {call.caller_masked} sur le {call.called_number or 'numéro national'}")]
    events = db.scalars(select(CallEvent).where(CallEvent.call_id == call.id)
                        .order_by(CallEvent.at, CallEvent.id)).all()
    moments += [Moment(e.at.astimezone(zone), _event_text(e)) for e in events]
    for leg in db.scalars(select(CallLeg).where(CallLeg.call_id == call.id).order_by(CallLeg.id)):
        result = STATUS_LABELS.get(leg.status, leg.status)
        text = f"Ligne {leg.number} appelée : {result}"
        if leg.accepted_at is not None:
            text += f", appel accepté par le référent à {leg.accepted_at.astimezone(zone):%H:%M:%S}"
        elif leg.status == "completed":
            text += ", sans acceptation du référent (appel non transmis)"
        if leg.duration_seconds:
            text += f", {duration(leg.duration_seconds)}"
        moments.append(Moment(leg.started_at.astimezone(zone), text, "dial"))
    moments.sort(key=lambda m: m.at)
    end = call.ended_at or (moments[-1].at if moments else call.started_at)
    why = call.outcome.value if call.outcome else "issue inconnue"
    if call.closed_reason:
        why += f" ({CLOSED_REASONS.get(call.closed_reason, call.closed_reason)})"
    if call.outcome_inferred:
        why += ", déduite de la dernière étape atteinte"
    text = f"Fin de l'appel : {why}"
    if call.step:
        text += f" ; dernière étape atteinte : {step_label(call.step)}"
    if call.duration_seconds is not None:
        text += f" ; durée {duration(call.duration_seconds)}"
    moments.append(Moment(end.astimezone(zone), text, "end"))
    return moments
