"""`/api/v1/tickets`: the tickets the token's owner may read (a referent: their départements';
the national team and admins: all), filtered, a page at a time (keyset cursor); a ticket with
its history; its actions (take, status, comment, escalate, close) with the same rules as the
pages (tickets/operations.py): outside one's rights 403, a refused move 422."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from flask_smorest import Blueprint, abort
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from accounts.models import User
from api.fields import Boolean, DateTime, Integer, List, Nested, Schema, String, in_range, one_of
from audit.operations import Actor
from core import db
from directory.reference import territories
from tickets import operations
from tickets.models import OPEN_STATUSES, ClosureStatus, Ticket, TicketKind, TicketStatus
from tracking import listing
from web import policy

blp = Blueprint("api_tickets", __name__, url_prefix="/api/v1",
                description="Tickets : liste, détail et historique, prise en charge, statut, "
                            "commentaires, escalade, clôture")

PAGE_SIZE = 50
MAX_PAGE = 200
PARIS = "Europe/Paris"
#: Closure statuses a person may give (« délai dépassé » is the automatic closure's).
CLOSURES = ["by_referent", "by_national", "confirmed"]


# --- schemas ----------------------------------------------------------------------------------

class TicketListQuery(Schema):
    status = String(validate=one_of(["open"] + [s.name for s in TicketStatus]),
                    metadata={"description": "statut ; « open » : nouveau, en cours ou en attente"})
    kind = String(validate=one_of([k.name for k in TicketKind]), metadata={"description": "type"})
    departement = String(max_length=3)
    national = Boolean(strict=False, metadata={
        "description": "true : suivis par l'équipe nationale (escaladés, incidents techniques, "
                       "sans département) ; false : par les départements"})
    late = Boolean(load_default=False, strict=False,
                   metadata={"description": "en retard seulement (échéance passée, non pris en charge)"})
    mine = Boolean(load_default=False, strict=False, metadata={"description": "attribués à moi"})
    after = String(max_length=20, metadata={"description": "curseur de la page suivante "
                                                           "(`next` de la page précédente)"})
    limit = Integer(load_default=PAGE_SIZE, strict=False, validate=in_range(1, MAX_PAGE))


class TicketItem(Schema):
    number = String()
    kind = String()
    kind_label = String()
    status = String()
    status_label = String()
    closure_status = String(allow_none=True)
    departement = String(allow_none=True)
    national = Boolean()
    title = String()
    assigned_to = String(allow_none=True, metadata={"description": "adresse de la personne"})
    created_at = DateTime(metadata={"description": "heure locale du département, avec son décalage"})
    due_at = DateTime(allow_none=True, metadata={"description": "échéance de prise en compte"})
    late = Boolean()


class TicketPage(Schema):
    items = List(Nested(TicketItem))
    next = String(allow_none=True, metadata={"description": "curseur de la page suivante, "
                                                           "null sur la dernière"})


class TicketHistoryEvent(Schema):
    at = DateTime()
    actor = String(metadata={"description": "« utilisateur:<adresse> », « api:<adresse> », "
                                            "« système:<tâche> »…"})
    kind = String(metadata={"description": "created, assigned, status, comment, escalated, "
                                           "email, closed, incident, requester"})
    text = String(metadata={"description": "en français ; le commentaire lui-même"})


class TicketDetail(TicketItem):
    closure_label = String(allow_none=True)
    description = String()
    requester_email = String(allow_none=True)
    callback_number = String(allow_none=True, metadata={
        "description": "numéro à rappeler (E.164), effacé à la fin de la durée de conservation"})
    caller = String(metadata={"description": "numéro masqué de l'appelant"})
    recording_seconds = Integer(allow_none=True)
    has_recording = Boolean(metadata={"description": "un message vocal est à écouter (page du ticket)"})
    call_id = Integer(allow_none=True)
    solicitation = String(allow_none=True, metadata={"description": "référence de la sollicitation"})
    incident = Integer(allow_none=True)
    taken_at = DateTime(allow_none=True)
    resolved_at = DateTime(allow_none=True)
    closed_at = DateTime(allow_none=True)
    updated_at = DateTime()
    may_handle = Boolean(metadata={"description": "le compte peut le traiter"})
    may_escalate = Boolean(metadata={"description": "le compte peut l'escalader"})
    events = List(Nested(TicketHistoryEvent), metadata={"description": "l'historique, le plus ancien d'abord"})


class TicketTake(Schema):
    assignee = String(load_default=None, allow_none=True, max_length=254, metadata={
        "description": "adresse de la personne à qui l'attribuer (par défaut : soi-même)"})


class TicketStatusChange(Schema):
    status = String(required=True, validate=one_of(
        [s.name for s in TicketStatus if s is not TicketStatus.closed]))


class TicketComment(Schema):
    text = String(required=True, max_length=operations.MAX_TEXT)


class TicketEscalation(Schema):
    description = String(required=True, max_length=operations.MAX_TEXT,
                         metadata={"description": "la demande reformulée pour l'équipe nationale"})


class TicketClosure(Schema):
    closure_status = String(required=True, validate=one_of(CLOSURES))
    comment = String(load_default=None, allow_none=True, max_length=operations.MAX_TEXT)


# --- helpers ----------------------------------------------------------------------------------

def _zone(code: str | None, zones: dict[str, str]) -> ZoneInfo:
    return ZoneInfo(zones.get(code or "", PARIS))


def _at(value, zone: ZoneInfo):
    return value.astimezone(zone) if value is not None else None


def _item(ticket: Ticket, zones: dict[str, str], now) -> dict:
    zone = _zone(ticket.departement_code, zones)
    return {
        "number": ticket.number, "kind": ticket.kind.name, "kind_label": ticket.kind.value,
        "status": ticket.status.name, "status_label": ticket.status.value,
        "closure_status": ticket.closure_status.name if ticket.closure_status else None,
        "departement": ticket.departement_code, "national": ticket.national,
        "title": ticket.title,
        "assigned_to": ticket.assigned_to.email if ticket.assigned_to else None,
        "created_at": _at(ticket.created_at, zone), "due_at": _at(ticket.due_at, zone),
        "late": ticket.is_late(now),
    }


def _detail(ticket: Ticket) -> dict:
    session = db.session()
    zones = listing.zones(session)
    zone = _zone(ticket.departement_code, zones)
    user = policy.acting_user()
    call = ticket.call
    return {
        **_item(ticket, zones, operations.now_of(session)),
        "closure_label": ticket.closure_status.value if ticket.closure_status else None,
        "description": ticket.description or "", "requester_email": ticket.requester_email,
        "callback_number": ticket.callback_number, "caller": ticket.caller_masked or "",
        "recording_seconds": ticket.recording_seconds,
        "has_recording": call is not None and bool(call.recording_url),
        "call_id": ticket.call_id,
        "solicitation": ticket.solicitation.reference if ticket.solicitation else None,
        "incident": ticket.incident_id, "taken_at": _at(ticket.taken_at, zone),
        "resolved_at": _at(ticket.resolved_at, zone), "closed_at": _at(ticket.closed_at, zone),
        "updated_at": _at(ticket.updated_at, zone),
        "may_handle": operations.may_handle(user, ticket),
        "may_escalate": operations.may_escalate(user, ticket),
        "events": [{"at": _at(e.at, zone), "actor": e.actor, "kind": e.kind, "text": e.text}
                   for e in ticket.events],
    }


def _ticket_or_abort(number: str, *, handle: bool = False) -> Ticket:
    try:
        ticket = operations.by_number(db.session(), number)
    except operations.TicketError:
        abort(404, message=f"ticket introuvable : {number[:40]}")
    user = policy.acting_user()
    if not operations.may_read(user, ticket):
        abort(403, message="ce ticket est d'un département auquel votre compte n'a pas accès")
    if handle and not operations.may_handle(user, ticket):
        abort(403, message="votre compte peut lire ce ticket mais pas le traiter")
    return ticket


def _actor() -> Actor:
    return Actor.api(policy.acting_user())


def _changed(ticket: Ticket, field: str | Callable[[str], str], change: Callable[[], object]):
    """Apply `change` (an operation of tickets/operations.py) and answer the ticket's detail. A
    refusal of the operation is a 403 when outside one's rights, else a 422 on `field` (or on
    the field `field(message)` names)."""
    try:
        change()
    except operations.TicketError as exc:
        db.rollback()
        if isinstance(exc, operations.TicketForbidden):
            abort(403, message=str(exc))
        name = field(str(exc)) if callable(field) else field
        abort(422, message=str(exc), errors={"json": {name: [str(exc)]}})
    return _detail(ticket)


# --- endpoints --------------------------------------------------------------------------------

@blp.route("/tickets")
@blp.arguments(TicketListQuery, location="query", as_kwargs=True)
@blp.response(200, TicketPage)
@policy.allow(policy.logged_in)
def list_tickets(after=None, limit=PAGE_SIZE, **query):
    """Les tickets que le compte peut lire, les plus récents d'abord, une page à la fois
    (curseur : `next` de la page précédente dans `after`)."""
    session = db.session()
    user = policy.acting_user()
    now = operations.now_of(session)
    stmt = select(Ticket).options(selectinload(Ticket.assigned_to))
    scope = operations.visible(user)
    if scope is not None:
        stmt = stmt.where(scope)
    status = query.get("status")
    if status == "open":
        stmt = stmt.where(Ticket.status.in_(OPEN_STATUSES))
    elif status:
        stmt = stmt.where(Ticket.status == TicketStatus[status])
    if query.get("kind"):
        stmt = stmt.where(Ticket.kind == TicketKind[query["kind"]])
    code = query.get("departement")
    if code is not None:
        code = code.strip().upper()
        if code not in territories():
            abort(422, errors={"query": {"departement": [f"département inconnu : {code}"]}})
        stmt = stmt.where(Ticket.departement_code == code)
    if query.get("national") is True:
        stmt = stmt.where(Ticket.national | Ticket.departement_code.is_(None))
    elif query.get("national") is False:
        stmt = stmt.where(~Ticket.national, Ticket.departement_code.is_not(None))
    if query.get("late"):
        stmt = stmt.where(operations.late_condition(now))
    if query.get("mine"):
        stmt = stmt.where(Ticket.assigned_to_id == user.id)
    if after is not None:
        if not (after.isdigit() and 0 < int(after) < 2**63):
            abort(422, errors={"query": {"after": ["curseur invalide : reprenez la liste au début"]}})
        stmt = stmt.where(Ticket.id < int(after))
    found = list(session.scalars(stmt.order_by(Ticket.id.desc()).limit(limit + 1)))
    zones = listing.zones(session)
    return {"items": [_item(t, zones, now) for t in found[:limit]],
            "next": str(found[limit - 1].id) if len(found) > limit else None}


@blp.route("/tickets/<number>")
@blp.response(200, TicketDetail)
@policy.allow(policy.logged_in)
def get_ticket(number: str):
    """Un ticket et son historique (actions nominatives et horodatées, commentaires)."""
    return _detail(_ticket_or_abort(number))


@blp.route("/tickets/<number>/take", methods=["POST"])
@blp.arguments(TicketTake)
@blp.response(200, TicketDetail)
@policy.allow(policy.logged_in)
def take(body: dict, number: str):
    """Prend en charge le ticket : attribué (au compte, ou à `assignee`), « en cours »."""
    ticket = _ticket_or_abort(number, handle=True)
    user = policy.acting_user()
    if body.get("assignee"):
        email = body["assignee"].strip().lower()
        user = db.session().scalars(select(User).where(User.email == email)).one_or_none()
        if user is None or not user.active or not operations.may_handle(user, ticket):
            abort(422, errors={"json": {"assignee": [
                "aucun compte actif pouvant traiter ce ticket n'a cette adresse"]}})
    return _changed(ticket, "assignee", lambda: operations.take(
        db.session(), _actor(), ticket, user, by=policy.acting_user()))


@blp.route("/tickets/<number>/status", methods=["POST"])
@blp.arguments(TicketStatusChange)
@blp.response(200, TicketDetail)
@policy.allow(policy.logged_in)
def set_status(body: dict, number: str):
    """Change le statut (nouveau → en cours → en attente ⇄ en cours → résolu ; un ticket résolu
    peut être rouvert) ; pour clore : `/close`."""
    ticket = _ticket_or_abort(number, handle=True)
    return _changed(ticket, "status", lambda: operations.set_status(
        db.session(), _actor(), ticket, TicketStatus[body["status"]], by=policy.acting_user()))


@blp.route("/tickets/<number>/comments", methods=["POST"])
@blp.arguments(TicketComment)
@blp.response(201, TicketDetail)
@policy.allow(policy.logged_in)
def add_comment(body: dict, number: str):
    """Ajoute un commentaire à l'historique (jamais modifié ni supprimé)."""
    ticket = _ticket_or_abort(number, handle=True)
    return _changed(ticket, "text", lambda: operations.comment(
        db.session(), _actor(), ticket, body["text"], by=policy.acting_user()))


@blp.route("/tickets/<number>/escalate", methods=["POST"])
@blp.arguments(TicketEscalation)
@blp.response(200, TicketDetail)
@policy.allow(policy.logged_in)
def escalate(body: dict, number: str):
    """Escalade le ticket à l'équipe nationale avec une description reformulée : réservé aux
    référents du département et aux administrateurs (sinon 403) ; deux courriels partent."""
    ticket = _ticket_or_abort(number)
    user = policy.acting_user()
    if not operations.may_escalate(user, ticket):
        abort(403, message="seuls les référents du département et les administrateurs peuvent "
                           "escalader ce ticket")
    return _changed(ticket, "description", lambda: operations.escalate(
        db.session(), _actor(), user, ticket, body["description"]))


@blp.route("/tickets/<number>/close", methods=["POST"])
@blp.arguments(TicketClosure)
@blp.response(200, TicketDetail)
@policy.allow(policy.logged_in)
def close(body: dict, number: str):
    """Clôt le ticket : « by_referent », « by_national » (équipe nationale et administrateurs),
    « confirmed » (confirmé par le demandeur) ; le demandeur connu est prévenu."""
    ticket = _ticket_or_abort(number, handle=True)
    return _changed(
        ticket, lambda message: "comment" if "commentaire" in message else "closure_status",
        lambda: operations.close(db.session(), _actor(), ticket,
                                 ClosureStatus[body["closure_status"]], by=policy.acting_user(),
                                 text=body.get("comment")))
