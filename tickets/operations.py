"""Tickets: creation (from a voicemail, a callback request, a referent's decision), workflow,
comments, escalation to the national team, closure, automatic closure, the late ones.

Every operation only flushes (the edge commits) and writes a TicketEvent naming who acted
(`audit.operations.Actor.label`): the history is append-only. Emails are queued
(`tickets.emails.queue`) and leave once the transaction is committed. Refusals are
`TicketError`s with a French message (the web and the API map a refused escalation to 403).

Workflow (TRANSITIONS): nouveau → en cours (assigned to a person) → en attente ⇄ en cours →
résolu → clos; a resolved ticket may be reopened (en cours); any ticket not closed may be
closed with a closure status (`close`); a resolved ticket nobody confirms is closed after
TICKETS_AUTO_CLOSE_DAYS days (« délai dépassé », `auto_close`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accounts import permissions
from accounts.models import Role, User
from audit.operations import Actor
from core import text as text_policy
from core.db import utcnow
from directory.models import Departement
from directory.operations import snapshot
from tickets import emails, sla
from tickets.models import (OPEN_STATUSES, ClosureStatus, Ticket, TicketCounter, TicketEvent,
                            TicketKind, TicketStatus)
from tracking.models import Call, Solicitation

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")

#: Who creates the tickets of the phone menu (voicemails, callback requests).
VOICE_ACTOR = Actor.system("svi")
#: Who closes tickets resolved and never confirmed.
AUTO_CLOSE_ACTOR = Actor.system("clôture automatique")
#: Thématique whose tickets go straight to the national team (FAQ: « assistance technique »).
TECHNICAL_THEMATIQUE = "assistance_technique"
#: Longest description and comment kept.
MAX_TEXT = 4000
#: What a ticket number looks like: "T-2026-000042".
NUMBER = re.compile(r"T-(\d{4})-(\d{6,})")
#: A number to call back, E.164.
E164 = re.compile(r"\+[1-9]\d{6,14}")

#: Status changes a person may make with `set_status` (closing is `close`).
TRANSITIONS: dict[TicketStatus, set[TicketStatus]] = {
    TicketStatus.new: {TicketStatus.in_progress},
    TicketStatus.in_progress: {TicketStatus.waiting, TicketStatus.resolved},
    TicketStatus.waiting: {TicketStatus.in_progress},
    TicketStatus.resolved: {TicketStatus.in_progress},
    TicketStatus.closed: set(),
}


class TicketError(ValueError):
    """A refused ticket operation; the message is French and says why."""


class TicketForbidden(TicketError):
    """The person may not do this on this ticket (the web and the API answer 403)."""


# --- helpers -----------------------------------------------------------------------------------

def _setting(db: Session, name: str, default):
    app = emails.app_of(db)
    if app is not None and name in app.config:
        return app.config[name]
    return default


def now_of(db: Session) -> datetime:
    """The app's clock (settable in tests), else the real time."""
    app = emails.app_of(db)
    clock = app.config.get("CLOCK") if app is not None else None
    return clock() if clock is not None else utcnow()


def checked_text(text: str | None, where: str, *, required: bool = True,
                 limit: int = MAX_TEXT) -> str:
    """Text as stored (outer whitespace removed), or TicketError naming the problem."""
    try:
        value = text_policy.check(text or "", where).strip()
    except text_policy.TextRefused as exc:
        raise TicketError(str(exc)) from None
    if required and not value:
        raise TicketError(f"{where} : à renseigner.")
    if len(value) > limit:
        raise TicketError(f"{where} : trop long ({len(value)} caractères, {limit} au plus).")
    return value


#: One mailbox: no comma, space, quote or bracket that would add a recipient or a display name.
EMAIL = re.compile(r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9-]+(\.[a-z0-9-]+)+")


def _email(address: str | None) -> str | None:
    if address is None or not address.strip():
        return None
    value = checked_text(address, "adresse du demandeur", limit=254)
    lowered = value.lower()
    if len(lowered) > 254 or not EMAIL.fullmatch(lowered):
        raise TicketError(f"adresse du demandeur invalide : « {value[:254]} » (une seule adresse, "
                          "sans espace ni accent, par exemple prenom.nom@example.gouv.fr)")
    return lowered


def _event(db: Session, ticket: Ticket, actor: Actor, kind: str, text: str = "",
           data: dict | None = None, at: datetime | None = None) -> TicketEvent:
    entry = TicketEvent(ticket=ticket, at=at or now_of(db), actor=text_policy.clean(actor.label)[:300],
                        actor_user_id=actor.user_id, kind=kind, text=text_policy.clean(text),
                        data=data or {})
    db.add(entry)
    return entry


def _touch(db: Session, ticket: Ticket) -> None:
    ticket.updated_at = now_of(db)


def _lock(db: Session, ticket: Ticket) -> None:
    """Serialize the changes of `ticket`: a no-op update takes its row lock on PostgreSQL and
    the write lock on SQLite, then the ticket is read again. Two people (or a person and the
    auto-closure) acting at once are applied one after the other, the second on the current
    ticket: it is refused if the first one changed what it relied on."""
    db.execute(update(Ticket).where(Ticket.id == ticket.id)
               .values(updated_at=Ticket.updated_at).execution_options(synchronize_session=False))
    db.refresh(ticket)


def departement_label(db: Session, code: str | None) -> str:
    """"93 – Seine-Saint-Denis", or « national » for a ticket without département."""
    if not code:
        return "national"
    dept = db.get(Departement, code)
    return f"{code} – {dept.name}" if dept is not None else code


def _timezone(db: Session, code: str | None) -> str:
    dept = db.get(Departement, code) if code else None
    return dept.timezone if dept is not None else "Europe/Paris"


# --- numbers -----------------------------------------------------------------------------------

def _counter_insert(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(TicketCounter).on_conflict_do_nothing(index_elements=["year"])


def next_number(db: Session, year: int) -> str:
    """The next ticket number of `year` ("T-2026-000042"). The counter's row is incremented by an
    UPDATE, which holds its lock until the transaction ends: two creations at once never get the
    same number, and a rolled-back creation gives its number back."""
    bump = (update(TicketCounter).where(TicketCounter.year == year)
            .values(last=TicketCounter.last + 1).returning(TicketCounter.last))
    last = db.execute(bump).scalar()
    if last is None:
        conn = db.connection()
        conn.execute(_counter_insert(conn.dialect.name).values(year=year, last=0))
        last = db.execute(bump).scalar()
    return f"T-{year}-{last:06d}"


def by_number(db: Session, number: str) -> Ticket:
    """The ticket with this number, or TicketError."""
    wanted = (number or "").strip().upper()
    ticket = (db.scalars(select(Ticket).where(Ticket.number == wanted)).one_or_none()
              if NUMBER.fullmatch(wanted) else None)  # no odd text reaches the database
    if ticket is None:
        raise TicketError(f"ticket introuvable : {number}")
    return ticket


# --- who may do what ---------------------------------------------------------------------------

def may_read(user, ticket: Ticket) -> bool:
    """Admins and the national team read every ticket; a referent, their départements' ones."""
    if permissions.sees_every_departement(user):
        return True
    return (permissions.has_role(user, Role.referent) and ticket.departement_code is not None
            and ticket.departement_code in user.departement_codes)


def may_handle(user, ticket: Ticket) -> bool:
    """Take, comment, change the status, close: admins; the national team on national tickets;
    referents on their départements' tickets."""
    if permissions.may_administer(user):
        return True
    if permissions.has_role(user, Role.national):
        return ticket.national or ticket.departement_code is None
    return may_read(user, ticket)


def may_escalate(user, ticket: Ticket) -> bool:
    """Only an active referent of the ticket's département, or an admin (FAQ: « seuls les
    référents sont habilités à escalader »)."""
    if permissions.may_administer(user):
        return True
    return (permissions.has_role(user, Role.referent) and ticket.departement_code is not None
            and ticket.departement_code in user.departement_codes)


def visible(user) -> ColumnElement[bool] | None:
    """SQL condition on Ticket for the tickets `user` may read (None: all of them)."""
    if permissions.sees_every_departement(user):
        return None
    if permissions.has_role(user, Role.referent):
        return Ticket.departement_code.in_(sorted(user.departement_codes))
    return Ticket.id.is_(None)  # nothing


# --- creation ----------------------------------------------------------------------------------

def _create(db: Session, actor: Actor, *, kind: TicketKind, departement_code: str | None,
            title: str, description: str, at: datetime, national: bool = False,
            call: Call | None = None, solicitation: Solicitation | None = None,
            requester_email: str | None = None, callback_number: str | None = None,
            caller_masked: str = "", recording_seconds: int | None = None,
            event_text: str = "") -> Ticket:
    view = snapshot(db, departement_code) if departement_code else None
    minutes = int(_setting(db, "TICKETS_SLA_MINUTES", sla.DEFAULT_MINUTES))
    ticket = Ticket(
        number=next_number(db, at.astimezone(PARIS).year), kind=kind,
        status=TicketStatus.new, departement_code=departement_code, national=national,
        call_id=call.id if call is not None else None,
        solicitation_id=solicitation.id if solicitation is not None else None,
        title=text_policy.clean(title)[:200], description=text_policy.clean(description),
        requester_email=requester_email, callback_number=callback_number,
        caller_masked=(caller_masked or "")[:32], recording_seconds=recording_seconds,
        created_at=at, updated_at=at, due_at=sla.deadline(view, at, minutes))
    db.add(ticket)
    db.flush()
    _event(db, ticket, actor, "created", event_text or f"Ticket créé ({kind.value}).",
           {"kind": kind.name, "national": national}, at=at)
    db.flush()
    return ticket


def _call_ticket(db: Session, call: Call, kind: TicketKind) -> Ticket | None:
    return db.scalars(select(Ticket).where(Ticket.call_id == call.id, Ticket.kind == kind)
                      ).one_or_none()


def _call_row(db: Session, call: Call) -> Solicitation | None:
    """The call's first solicitation row (None for a test call or a call without département)."""
    return db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)
                      .order_by(Solicitation.is_primary.desc(), Solicitation.id).limit(1)
                      ).one_or_none()


def _motif(row: Solicitation | None) -> str:
    if row is None or row.thematique is None:
        return "non précisé"
    return row.thematique.label + (f" – {row.motif.label}" if row.motif is not None else "")


def _call_instant(db: Session, call: Call, at: datetime | None) -> datetime:
    return at or call.step_at or now_of(db)


def _seconds(seconds: int | None) -> str:
    if seconds is None:
        return "inconnue"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def from_voicemail(db: Session, call: Call, *, at: datetime | None = None) -> Ticket | None:
    """The ticket of the voicemail left on `call` (created once: a replay finds the same one),
    with its deadline, the call's solicitation row, and the email to the département's
    referents. A test call (the simulator's) gets none: None."""
    existing = _call_ticket(db, call, TicketKind.voicemail)
    if existing is not None or call.test:
        return existing
    at = _call_instant(db, call, at)
    row = _call_row(db, call)
    dept = departement_label(db, call.departement_code)
    seconds = call.recording_seconds
    tz = _timezone(db, call.departement_code)
    description = (f"Message vocal de {_seconds(seconds)} laissé le {emails.local_time(at, tz)} "
                   f"(heure du département). Motif choisi : {_motif(row)}.")
    ticket = _create(db, VOICE_ACTOR, kind=TicketKind.voicemail,
                     departement_code=call.departement_code, title=f"Message vocal ({dept})",
                     description=description, at=at, call=call, solicitation=row,
                     caller_masked=call.caller_masked, recording_seconds=seconds,
                     event_text="Ticket créé à partir d'un message vocal.")
    emails.queue(db, ticket, "new_voicemail", {
        "numero": ticket.number, "departement": dept, "appelant": call.caller_masked,
        "date": emails.local_time(at, tz), "duree": _seconds(seconds), "motif": _motif(row),
        "echeance": emails.local_time(ticket.due_at, tz)},
        to=emails.referents(db, call.departement_code))
    return ticket


def checked_number(number: str) -> str:
    """A number to call back, E.164 ("+33612345678"), or TicketError."""
    value = "".join((number or "").split())
    if not E164.fullmatch(value):
        raise TicketError(f"numéro à rappeler invalide : « {text_policy.clean(number or '')[:40]} »")
    return value


def from_callback(db: Session, call: Call, number: str, *, at: datetime | None = None
                  ) -> Ticket | None:
    """The ticket of a callback request made on `call` (created once per call): `number` is the
    E.164 number to call back, kept in clear until the callers' data is purged. A test call
    gets none: None."""
    number = checked_number(number)
    existing = _call_ticket(db, call, TicketKind.callback)
    if existing is not None or call.test:
        return existing
    from core.privacy import mask_number
    at = _call_instant(db, call, at)
    row = _call_row(db, call)
    dept = departement_label(db, call.departement_code)
    tz = _timezone(db, call.departement_code)
    description = (f"Demande de rappel faite le {emails.local_time(at, tz)} (heure du "
                   f"département), personne n'ayant répondu. Motif choisi : {_motif(row)}.")
    ticket = _create(db, VOICE_ACTOR, kind=TicketKind.callback,
                     departement_code=call.departement_code, title=f"Demande de rappel ({dept})",
                     description=description, at=at, call=call, solicitation=row,
                     callback_number=number, caller_masked=call.caller_masked,
                     event_text="Ticket créé à partir d'une demande de rappel.")
    emails.queue(db, ticket, "new_callback", {
        "numero": ticket.number, "departement": dept, "appelant": call.caller_masked,
        "rappel": mask_number(number), "date": emails.local_time(at, tz), "motif": _motif(row),
        "echeance": emails.local_time(ticket.due_at, tz)},
        to=emails.referents(db, call.departement_code))
    return ticket


def from_solicitation(db: Session, actor: Actor, row: Solicitation, description: str, *,
                      national: bool = False, title: str | None = None,
                      requester_email: str | None = None) -> Ticket:
    """A ticket decided by a referent on a solicitation row (a call, an email…). A row of the
    thématique « assistance technique » is a technical incident: it goes straight to the
    national team (and its row is marked escalated), as does any ticket with `national`."""
    description = checked_text(description, "description")
    requester_email = _email(requester_email)
    technical = row.thematique is not None and row.thematique.key == TECHNICAL_THEMATIQUE
    national = national or technical
    kind = TicketKind.incident if technical else TicketKind.referent
    dept = departement_label(db, row.departement_code)
    title = checked_text(title, "titre", limit=200) if title else f"{_motif(row)} ({dept})"
    ticket = _create(db, actor, kind=kind, departement_code=row.departement_code, title=title,
                     description=description, at=now_of(db), national=national,
                     call=row.call, solicitation=row, requester_email=requester_email,
                     caller_masked=row.call.caller_masked if row.call is not None else "",
                     recording_seconds=None,
                     event_text=f"Ticket créé à partir de la sollicitation {row.reference}"
                                + (" et transmis à l'équipe nationale." if national else "."))
    if national:
        row.escalated = True
        emails.queue(db, ticket, "escalation_national", {
            "numero": ticket.number, "titre": ticket.title, "departement": dept,
            "referent": actor_name(actor), "description": description}, national=True)
    _acknowledge(db, ticket)
    db.flush()
    return ticket


def actor_name(actor: Actor) -> str:
    """How an actor is named in emails: the person's address, or the label."""
    label = actor.label
    return label.split(":", 1)[1] if label.startswith(("utilisateur:", "api:")) else label


def _acknowledge(db: Session, ticket: Ticket) -> None:
    if ticket.requester_email:
        emails.queue(db, ticket, "ack_requester", {
            "numero": ticket.number, "titre": ticket.title,
            "departement": departement_label(db, ticket.departement_code),
            "echeance": emails.local_time(ticket.due_at, _timezone(db, ticket.departement_code))},
            to=[ticket.requester_email])


def set_requester(db: Session, actor: Actor, ticket: Ticket, address: str | None) -> None:
    """Record the requester's email (the acknowledgement leaves at once)."""
    value = _email(address)
    _lock(db, ticket)
    if value == ticket.requester_email:
        return
    ticket.requester_email = value
    _touch(db, ticket)
    _event(db, ticket, actor, "requester",
           f"Adresse du demandeur : {value}" if value else "Adresse du demandeur retirée.")
    if value:
        _acknowledge(db, ticket)
    db.flush()


# --- workflow ----------------------------------------------------------------------------------

def _check_handle(user, ticket: Ticket) -> None:
    if user is not None and not may_handle(user, ticket):
        raise TicketForbidden(f"vous ne pouvez pas traiter le ticket {ticket.number}")


def take(db: Session, actor: Actor, ticket: Ticket, user: User, *, by: User | None = None) -> Ticket:
    """Assign the ticket to `user` and put it « en cours » (taken into account: `taken_at`).
    `by`, when given, is checked (may they handle it?)."""
    _lock(db, ticket)
    _check_handle(by, ticket)
    if ticket.status in (TicketStatus.resolved, TicketStatus.closed):
        raise TicketError(f"le ticket {ticket.number} est {ticket.status.value} : "
                          "rouvrez-le d'abord" if ticket.status is TicketStatus.resolved
                          else f"le ticket {ticket.number} est clos")
    if not user.active:
        raise TicketError(f"le compte {user.email} est désactivé")
    now = now_of(db)
    if ticket.assigned_to_id != user.id:
        ticket.assigned_to = user
        _event(db, ticket, actor, "assigned", f"Attribué à {user.label}.", {"user": user.email})
    if ticket.status is not TicketStatus.in_progress:
        _status(db, actor, ticket, TicketStatus.in_progress, now)
    _touch(db, ticket)
    db.flush()
    return ticket


def _status(db: Session, actor: Actor, ticket: Ticket, status: TicketStatus, now: datetime) -> None:
    before = ticket.status
    ticket.status = status
    if status is TicketStatus.in_progress and ticket.taken_at is None:
        ticket.taken_at = now
    if status is TicketStatus.resolved:
        ticket.resolved_at = now
    if before is TicketStatus.resolved and status is TicketStatus.in_progress:
        ticket.resolved_at = None  # reopened
    _event(db, ticket, actor, "status", f"Statut : {before.value} → {status.value}.",
           {"from": before.name, "to": status.name})


def set_status(db: Session, actor: Actor, ticket: Ticket, status: TicketStatus, *,
               by: User | None = None) -> Ticket:
    """Move the ticket along the workflow (TRANSITIONS), or TicketError."""
    _lock(db, ticket)
    _check_handle(by, ticket)
    if status is TicketStatus.closed:
        raise TicketError("pour clore un ticket, choisissez un statut de clôture")
    if status is ticket.status:
        return ticket
    if status not in TRANSITIONS[ticket.status]:
        allowed = ", ".join(s.value for s in TRANSITIONS[ticket.status]) or "aucun"
        raise TicketError(f"le ticket {ticket.number} est {ticket.status.value} : il ne peut "
                          f"pas passer {status.value} (possible : {allowed})")
    _status(db, actor, ticket, status, now_of(db))
    _touch(db, ticket)
    db.flush()
    return ticket


def comment(db: Session, actor: Actor, ticket: Ticket, text: str, *,
            by: User | None = None) -> TicketEvent:
    """Add a comment (never edited nor deleted afterwards)."""
    _lock(db, ticket)
    _check_handle(by, ticket)
    value = checked_text(text, "commentaire")
    entry = _event(db, ticket, actor, "comment", value)
    _touch(db, ticket)
    db.flush()
    return entry


def escalate(db: Session, actor: Actor, user: User, ticket: Ticket, description: str) -> Ticket:
    """Hand the ticket to the national team with a reformulated description: only an active
    referent of its département, or an admin (else TicketForbidden). The ticket's solicitation
    row is marked escalated; a confirmation goes to `user`, a notification to the team."""
    _lock(db, ticket)
    if not may_escalate(user, ticket):
        raise TicketForbidden("seuls les référents du département et les administrateurs "
                              "peuvent escalader ce ticket vers l'équipe nationale")
    if ticket.status is TicketStatus.closed:
        raise TicketError(f"le ticket {ticket.number} est clos")
    if ticket.national:
        raise TicketError(f"le ticket {ticket.number} est déjà suivi par l'équipe nationale")
    description = checked_text(description, "description reformulée")
    ticket.national = True
    _event(db, ticket, actor, "escalated", description, {"by": user.email})
    if ticket.solicitation is not None:
        ticket.solicitation.escalated = True
    _touch(db, ticket)
    dept = departement_label(db, ticket.departement_code)
    values = {"numero": ticket.number, "titre": ticket.title, "departement": dept,
              "referent": user.label, "description": description}
    emails.queue(db, ticket, "escalation_referent", values, to=[user.email])
    emails.queue(db, ticket, "escalation_national", values, national=True)
    db.flush()
    return ticket


def close(db: Session, actor: Actor, ticket: Ticket, closure_status: ClosureStatus, *,
          by: User | None = None, text: str | None = None) -> Ticket:
    """Close the ticket with a closure status; the requester is told. Closed by the referent:
    its solicitation row is marked resolved at the first level (by the national team: not)."""
    _lock(db, ticket)
    _check_handle(by, ticket)
    if ticket.status is TicketStatus.closed:
        raise TicketError(f"le ticket {ticket.number} est déjà clos")
    if closure_status is ClosureStatus.delay_exceeded and actor != AUTO_CLOSE_ACTOR:
        raise TicketError("« délai dépassé » est réservé à la clôture automatique")
    if by is not None and closure_status is ClosureStatus.by_national and \
            not permissions.has_role(by, Role.national, Role.admin):
        raise TicketForbidden("seule l'équipe nationale clôt un ticket « par l'équipe nationale »")
    if by is not None and closure_status is ClosureStatus.by_referent and \
            not may_escalate(by, ticket):
        # The row would say « resolved at the first level » on another's behalf.
        raise TicketForbidden("seuls les référents du département (et les administrateurs) "
                              "clôturent un ticket « par le référent »")
    note = checked_text(text, "commentaire de clôture", required=False) if text else ""
    _close(db, actor, ticket, closure_status, now_of(db), note)
    db.flush()
    return ticket


def _close(db: Session, actor: Actor, ticket: Ticket, closure_status: ClosureStatus,
           now: datetime, note: str = "") -> None:
    before = ticket.status
    ticket.status, ticket.closure_status, ticket.closed_at = (TicketStatus.closed, closure_status,
                                                              now)
    if ticket.resolved_at is None:
        ticket.resolved_at = now
    ticket.updated_at = now
    row = ticket.solicitation
    if row is not None:
        if closure_status is ClosureStatus.by_referent:
            row.resolved_first_level = True
        elif closure_status is ClosureStatus.by_national:
            row.resolved_first_level = False
    _event(db, ticket, actor, "closed",
           f"Clos : {closure_status.value}." + (f" {note}" if note else ""),
           {"from": before.name, "closure": closure_status.name}, at=now)
    if ticket.requester_email:
        emails.queue(db, ticket, "closed", {"numero": ticket.number, "titre": ticket.title,
                                            "statut": closure_status.value},
                     to=[ticket.requester_email])


def auto_close(db: Session, now: datetime, days: int) -> int:
    """Close (« délai dépassé ») the tickets resolved `days` days ago or more and never
    confirmed nor reopened since; returns how many."""
    limit = now - timedelta(days=days)
    tickets = db.scalars(select(Ticket).where(Ticket.status == TicketStatus.resolved,
                                              Ticket.resolved_at <= limit)
                         .order_by(Ticket.id)).all()
    closed = 0
    for ticket in tickets:
        _lock(db, ticket)  # reopened or closed by someone meanwhile: left as it is now
        if ticket.status is TicketStatus.resolved and ticket.resolved_at <= limit:
            _close(db, AUTO_CLOSE_ACTOR, ticket, ClosureStatus.delay_exceeded, now,
                   f"Résolu depuis le {emails.local_time(ticket.resolved_at)} sans confirmation.")
            closed += 1
    db.flush()
    return closed


# --- late tickets ------------------------------------------------------------------------------

def late_condition(now: datetime) -> ColumnElement[bool]:
    """SQL condition: past its deadline and never taken into account."""
    return and_(Ticket.due_at < now, Ticket.taken_at.is_(None),
                Ticket.status.in_(OPEN_STATUSES))


def late(db: Session, now: datetime, *, departement_code: str | None = None) -> list[Ticket]:
    """Tickets past their deadline and never taken, oldest deadline first."""
    query = select(Ticket).where(late_condition(now)).order_by(Ticket.due_at, Ticket.id)
    if departement_code is not None:
        query = query.where(Ticket.departement_code == departement_code)
    return list(db.scalars(query))


def count_late(db: Session, now: datetime, departement_codes=None) -> int:
    """How many tickets are late (optionally among some départements): the dashboard's figure."""
    query = select(func.count(Ticket.id)).where(late_condition(now))
    if departement_codes is not None:
        query = query.where(Ticket.departement_code.in_(list(departement_codes)))
    return db.scalar(query) or 0


# --- callers' data -----------------------------------------------------------------------------

def purge_callers(db: Session, *, before: datetime) -> int:
    """Forget the callers of tickets created before `before` (the callers' data retention):
    the number to call back and the masked number. Returns how many tickets were purged."""
    result = db.execute(
        update(Ticket).where(Ticket.created_at < before,
                             Ticket.callback_number.is_not(None)
                             | ((Ticket.caller_masked != "purgé") & (Ticket.caller_masked != "")))
        .values(callback_number=None, caller_masked="purgé")
        .execution_options(synchronize_session=False))
    db.flush()
    return result.rowcount or 0


# --- daily digest ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Digest:
    """One département's daily digest, rendered."""

    departement_code: str
    to: list[str]
    subject: str
    body: str


def _digest_tickets(db: Session, now: datetime) -> dict[str, dict[str, list[Ticket]]]:
    """Open callbacks, open voicemails and late tickets, by département."""
    found: dict[str, dict[str, list[Ticket]]] = {}
    rows = db.scalars(select(Ticket).where(Ticket.departement_code.is_not(None),
                                           Ticket.status.in_(OPEN_STATUSES))
                      .order_by(Ticket.departement_code, Ticket.created_at, Ticket.id))
    for ticket in rows:
        lists = found.setdefault(ticket.departement_code,
                                 {"rappels": [], "messages": [], "retards": []})
        if ticket.kind is TicketKind.callback:
            lists["rappels"].append(ticket)
        elif ticket.kind is TicketKind.voicemail:
            lists["messages"].append(ticket)
        if ticket.is_late(now):
            lists["retards"].append(ticket)
    return found


def _digest_line(ticket: Ticket, config, tz: str) -> str:
    who = f", attribué à {ticket.assigned_to.label}" if ticket.assigned_to is not None else ""
    return (f"- {ticket.number} du {emails.local_time(ticket.created_at, tz)} "
            f"({ticket.status.value}{who}) : {emails.ticket_url(config, ticket.number)}")


def digests(db: Session, now: datetime) -> list[Digest]:
    """The digests to send: one per département with open callbacks or voicemails, or late
    tickets, and at least one active referent."""
    app = emails.app_of(db)
    config = app.config if app is not None else {}
    result = []
    for code, lists in _digest_tickets(db, now).items():
        to = emails.referents(db, code)
        if not to:
            continue
        tz = _timezone(db, code)
        values = {name: "\n".join(_digest_line(t, config, tz) for t in tickets) or "- aucun"
                  for name, tickets in lists.items()}
        values.update(departement=departement_label(db, code),
                      date=now.astimezone(ZoneInfo(tz)).strftime("%d/%m/%Y"),
                      lien=f"{config.get('PUBLIC_BASE_URL') or ''}/tickets?departement={code}")
        subject, body = emails.render(db, "digest", values)
        result.append(Digest(code, to, subject, body))
    return result


def departements_without_referents(db: Session, now: datetime) -> list[str]:
    """Départements with something in their digest but no active referent to send it to."""
    return [code for code in _digest_tickets(db, now) if not emails.referents(db, code)]
