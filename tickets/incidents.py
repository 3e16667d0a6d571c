"""Incidents: a failure that makes many people call. Tickets are linked to one; the national team
may have the phone menu announce a message, for one département or all, until an expiry.

A message is part of what callers hear: setting or clearing it moves the directory's version
(`directory_state`, as any directory or prompt edit does), so that every worker reloads what it
holds on its next call instead of querying at each webhook. Flush-only; audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from audit.operations import Actor, record
from directory.models import Departement
from tickets.models import Incident, Ticket
from tickets.operations import TicketError, _event, _lock, _touch, checked_text, now_of

#: Longest message announced to callers (it is read aloud before routing).
MAX_MESSAGE = 500


def _departement(db: Session, code: str | None) -> str | None:
    if not code:
        return None
    dept = db.get(Departement, code.strip().upper())
    if dept is None:
        raise TicketError(f"département inconnu : « {code} »")
    return dept.code


def _scope(code: str | None) -> str:
    return f"département {code}" if code else "tous les départements"


def bump_directory_version(db: Session) -> None:
    """Move the directory's version in this transaction: workers reload on their next call."""
    moved = db.execute(sql_text("UPDATE directory_state SET version = version + 1 WHERE id = 1"))
    if moved.rowcount == 0:
        db.execute(sql_text("INSERT INTO directory_state (id, version) VALUES (1, 1)"))


def create(db: Session, actor: Actor, title: str, description: str = "", *,
           departement_code: str | None = None) -> Incident:
    """Open an incident, for one département or all (None)."""
    code = _departement(db, departement_code)
    incident = Incident(title=checked_text(title, "titre de l'incident", limit=200),
                        description=checked_text(description, "description", required=False),
                        departement_code=code, created_at=now_of(db),
                        created_by=actor.label[:300])
    db.add(incident)
    db.flush()
    record(db, actor, entity="incident", departement_code=code,
           summary=f"Incident n° {incident.id} ouvert ({_scope(code)}) : {incident.title}")
    return incident


def get(db: Session, incident_id: int) -> Incident:
    """The incident, or TicketError."""
    incident = db.get(Incident, incident_id)
    if incident is None:
        raise TicketError(f"incident introuvable : {incident_id}")
    return incident


def close(db: Session, actor: Actor, incident: Incident) -> Incident:
    """Close the incident; its message, if any, is no longer announced."""
    if incident.closed_at is not None:
        raise TicketError(f"l'incident n° {incident.id} est déjà clos")
    incident.closed_at = now_of(db)
    if incident.message is not None:
        bump_directory_version(db)
    record(db, actor, entity="incident", departement_code=incident.departement_code,
           summary=f"Incident n° {incident.id} clos : {incident.title}")
    db.flush()
    return incident


def link(db: Session, actor: Actor, ticket: Ticket, incident: Incident | None) -> Ticket:
    """Link a ticket to an incident of its own département or of every département (None:
    unlink)."""
    _lock(db, ticket)
    if incident is not None and incident.closed_at is not None:
        raise TicketError(f"l'incident n° {incident.id} est clos")
    if incident is not None and not may_link(ticket, incident):
        raise TicketError(f"l'incident n° {incident.id} concerne un autre département")
    if ticket.incident_id == (incident.id if incident else None):
        return ticket
    ticket.incident = incident
    _event(db, ticket, actor, "incident",
           f"Rattaché à l'incident n° {incident.id} : {incident.title}." if incident
           else "Détaché de son incident.", {"incident": incident.id if incident else None})
    _touch(db, ticket)
    db.flush()
    return ticket


#: Longest an announcement may be set for.
MAX_MESSAGE_DAYS = 366


def set_message(db: Session, actor: Actor, incident: Incident, text: str | None,
                until: datetime | None) -> Incident:
    """Set (or clear, with an empty text) the message the phone menu announces for the
    incident's département (or all) before routing, until `until` (UTC; None: until cleared)."""
    value = checked_text(text, "message annoncé", required=False, limit=MAX_MESSAGE) or None
    if value is not None:
        value = " ".join(value.split())  # read aloud: one paragraph
        if incident.closed_at is not None:
            raise TicketError(f"l'incident n° {incident.id} est clos")
        if until is not None:
            if until.tzinfo is None:
                raise TicketError("la date de fin du message doit porter son fuseau horaire")
            now = now_of(db)
            try:
                too_far = until.astimezone(UTC) - now > timedelta(days=MAX_MESSAGE_DAYS)
            except OverflowError:  # 9999-12-31 west of Greenwich is past year 9999 in UTC
                too_far = True
            if too_far:
                raise TicketError(f"la date de fin du message est invraisemblable : "
                                  f"{MAX_MESSAGE_DAYS} jours au plus")
            if until <= now:
                raise TicketError("la date de fin du message est déjà passée")
    else:
        until = None
    before = (incident.message, incident.message_until)
    if before == (value, until):
        return incident
    incident.message, incident.message_until = value, until
    bump_directory_version(db)
    record(db, actor, entity="incident", departement_code=incident.departement_code,
           summary=(f"Incident n° {incident.id} : message annoncé ({_scope(incident.departement_code)})"
                    if value else f"Incident n° {incident.id} : message retiré"),
           changes={"message": [before[0], value],
                    "jusqu'au": [before[1].isoformat() if before[1] else None,
                                 until.isoformat() if until else None]})
    db.flush()
    return incident


@dataclass(frozen=True)
class Announcement:
    """A message announced by the phone menu: for a département (None: all), until an instant."""

    departement_code: str | None
    message: str
    until: datetime | None

    def heard_at(self, now: datetime) -> bool:
        """Still announced at `now`."""
        return self.until is None or now < self.until


def announcements(db: Session, now: datetime | None = None) -> list[Announcement]:
    """The messages of open incidents, oldest first; those expired at `now` left out. A cache
    (one read per directory version) keeps them all and filters with `heard_at` at each call:
    a message stops at its expiry without any write."""
    query = (select(Incident.departement_code, Incident.message, Incident.message_until)
             .where(Incident.message.is_not(None), Incident.closed_at.is_(None))
             .order_by(Incident.created_at, Incident.id))
    found = [Announcement(code, message, until) for code, message, until in db.execute(query)]
    return [a for a in found if now is None or a.heard_at(now)]


def group(found: list[Announcement], now: datetime) -> dict[str | None, list[str]]:
    """Announcements heard at `now`, by département code (None: every département)."""
    messages: dict[str | None, list[str]] = {}
    for announcement in found:
        if announcement.heard_at(now):
            messages.setdefault(announcement.departement_code, []).append(announcement.message)
    return messages


def active_messages(db: Session, now: datetime) -> dict[str | None, list[str]]:
    """Messages announced now, by département code (None: every département), oldest first."""
    return group(announcements(db), now)


def messages_for(messages: dict[str | None, list[str]], code: str | None) -> list[str]:
    """What a caller of département `code` hears: the messages for all, then its own."""
    return list(messages.get(None, [])) + (list(messages.get(code, [])) if code else [])


def open_incidents(db: Session, for_ticket: Ticket | None = None) -> list[Incident]:
    """Incidents not closed, newest first; those a ticket may be linked to, when given."""
    found = db.scalars(select(Incident).where(Incident.closed_at.is_(None))
                       .order_by(Incident.created_at.desc(), Incident.id.desc()))
    return [i for i in found if for_ticket is None or may_link(for_ticket, i)]


def may_link(ticket: Ticket, incident: Incident) -> bool:
    """An incident of every département, or of the ticket's own."""
    return incident.departement_code in (None, ticket.departement_code)
