"""`/api/v1/solicitations` and `/api/v1/calls`: the « historique des sollicitations » of the
user's départements, read with filters and a keyset cursor, qualified (one or several motifs),
added by hand; a call with its legs and timeline. The same operations as « Mes appels »
(tracking/listing.py, tracking/solicitations.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask_smorest import Blueprint, abort
from sqlalchemy import select

from accounts import permissions
from audit.operations import Actor
from api.fields import (Boolean, Date, DateTime, Integer, List, Nested, Schema, String,
                        in_range, one_of)
from core import db
from core.spreadsheets import is_plausible_year
from directory.reference import official_order, territories
from tracking import listing, solicitations
from tracking.models import Call, CallLeg, Channel, Outcome
from web import policy

blp = Blueprint("api_solicitations", __name__, url_prefix="/api/v1",
                description="Appels et sollicitations : liste, détail, qualification, saisie")

MAX_PAGE = 200
#: Motifs one qualification may give (a call split into several rows).
ADDABLE_CHANNELS = [c.name for c in Channel if c is not Channel.phone_svi]


# --- schemas ----------------------------------------------------------------------------------

class ListQuery(Schema):
    start = Date(metadata={"description": "du (date locale du département, incluse)"})
    end = Date(metadata={"description": "au (date locale du département, incluse)"})
    departement = String(max_length=3)
    outcome = String(validate=one_of([o.name for o in Outcome]),
                     metadata={"description": "issue de l'appel"})
    thematique = String(max_length=40, metadata={"description": "clé de thématique"})
    channel = String(validate=one_of([c.name for c in Channel]))
    to_qualify = Boolean(load_default=False, strict=False,
                         metadata={"description": "à qualifier seulement"})
    after = String(max_length=100, metadata={"description": "curseur de la page suivante "
                                                            "(`next` de la page précédente)"})
    limit = Integer(load_default=listing.PAGE_SIZE, strict=False, validate=in_range(1, MAX_PAGE))


class Row(Schema):
    reference = String()
    occurred_at = DateTime(metadata={"description": "heure locale du département, avec son décalage"})
    departement = String()
    channel = String()
    caller = String(allow_none=True, metadata={"description": "numéro masqué"})
    outcome = String(allow_none=True)
    wait_seconds = Integer(allow_none=True)
    talk_seconds = Integer(allow_none=True)
    thematique = String(allow_none=True, metadata={"description": "libellé"})
    motif = String(allow_none=True)
    sous_motif = String(allow_none=True)
    call_id = Integer(allow_none=True)
    is_primary = Boolean()
    comment = String()


class Page(Schema):
    items = List(Nested(Row))
    next = String(allow_none=True, metadata={"description": "curseur de la page suivante, "
                                                           "null sur la dernière"})


class Label(Schema):
    key = String()
    label = String()


class Moment(Schema):
    at = DateTime()
    text = String()
    kind = String()


class Leg(Schema):
    number = String()
    status = String()
    started_at = DateTime()
    accepted_at = DateTime(allow_none=True)
    ended_at = DateTime(allow_none=True)
    duration_seconds = Integer(allow_none=True)


class CallOut(Schema):
    id = Integer()
    departement = String(allow_none=True)
    caller = String()
    started_at = DateTime()
    ended_at = DateTime(allow_none=True)
    outcome = String(allow_none=True)
    outcome_label = String(allow_none=True)
    closed_reason = String(allow_none=True)
    wait_seconds = Integer(allow_none=True)
    talk_seconds = Integer(allow_none=True)
    duration_seconds = Integer(allow_none=True)
    has_voicemail = Boolean()
    legs = List(Nested(Leg))
    timeline = List(Nested(Moment), metadata={"description": "le déroulé, en français"})


class Detail(Schema):
    reference = String()
    departement = String()
    occurred_at = DateTime()
    channel = String()
    source = String()
    is_primary = Boolean()
    thematique = Nested(Label, allow_none=True)
    motif = Nested(Label, allow_none=True)
    sous_motif = Nested(Label, allow_none=True)
    comment = String()
    resolved = Boolean(allow_none=True, metadata={"description": "résolu au niveau 1"})
    escalated = Boolean(allow_none=True, metadata={"description": "escaladé au niveau national"})
    version = String(metadata={"description": "état de la qualification de l'appel : à renvoyer "
                                              "avec une qualification (409 s'il a changé)"})
    rows = List(String(), metadata={"description": "références des lignes du même appel"})
    call = Nested(CallOut, allow_none=True)


class MotifIn(Schema):
    thematique = String(required=True, max_length=100, metadata={"description": "clé ou libellé"})
    motif = String(required=True, max_length=100)
    sous_motif = String(load_default=None, allow_none=True, max_length=100)


class Qualification(Schema):
    motifs = List(Nested(MotifIn), required=True, min_items=1,
                  max_items=solicitations.MAX_MOTIFS,
                  metadata={"description": "un motif par ligne ; l'appel en aura exactement "
                                           "ces lignes"})
    comment = String(load_default=None, allow_none=True, max_length=solicitations.MAX_COMMENT)
    resolved = Boolean(load_default=None, allow_none=True)
    escalated = Boolean(load_default=None, allow_none=True)
    version = String(load_default=None, allow_none=True, max_length=64)


class NewSolicitation(Schema):
    departement = String(required=True, max_length=3)
    occurred_at = DateTime(required=True, metadata={
        "description": "avec décalage horaire ; sans, c'est l'heure locale du département"})
    channel = String(required=True, validate=one_of(ADDABLE_CHANNELS))
    thematique = String(load_default=None, allow_none=True, max_length=100)
    motif = String(load_default=None, allow_none=True, max_length=100)
    sous_motif = String(load_default=None, allow_none=True, max_length=100)
    comment = String(load_default="", max_length=solicitations.MAX_COMMENT)
    resolved = Boolean(load_default=None, allow_none=True)
    escalated = Boolean(load_default=None, allow_none=True)


# --- helpers ----------------------------------------------------------------------------------

def _scope(user) -> list[str] | None:
    if permissions.sees_every_departement(user):
        return None
    return permissions.visible_codes(user, official_order(list(territories())))


def _checked_departement(code: str | None, where: str) -> str | None:
    """A département code of the query or body: unknown → 422, not readable → 403."""
    if code is None:
        return None
    code = code.strip().upper()
    if code not in territories():
        abort(422, errors={where: {"departement": [f"département inconnu : {code}"]}})
    if not permissions.may_read_departement(policy.acting_user(), code):
        abort(403, message=f"votre compte n'a pas accès au département {code}")
    return code


def _row_or_abort(reference: str):
    try:
        row = solicitations.by_reference(db.session(), reference)
    except solicitations.SolicitationError:
        abort(404, message=f"sollicitation introuvable : {reference}")
    if not permissions.may_read_departement(policy.acting_user(), row.departement_code):
        abort(403, message="cette sollicitation est d'un département auquel votre compte n'a "
                           "pas accès")
    return row


def _label(item) -> dict | None:
    return {"key": item.key, "label": item.label} if item is not None else None


def _call(call: Call, timezone: str) -> dict:
    session = db.session()
    zone = ZoneInfo(timezone)
    legs = session.scalars(select(CallLeg).where(CallLeg.call_id == call.id).order_by(CallLeg.id))
    local = lambda at: at.astimezone(zone) if at is not None else None  # noqa: E731
    return {
        "id": call.id, "departement": call.departement_code, "caller": call.caller_masked,
        "started_at": local(call.started_at), "ended_at": local(call.ended_at),
        "outcome": call.outcome.name if call.outcome else None,
        "outcome_label": call.outcome.value if call.outcome else None,
        "closed_reason": call.closed_reason, "wait_seconds": call.wait_seconds,
        "talk_seconds": call.talk_seconds, "duration_seconds": call.duration_seconds,
        "has_voicemail": bool(call.recording_url),
        "legs": [{"number": leg.number, "status": leg.status, "started_at": local(leg.started_at),
                  "accepted_at": local(leg.accepted_at), "ended_at": local(leg.ended_at),
                  "duration_seconds": leg.duration_seconds} for leg in legs],
        "timeline": [{"at": m.at, "text": m.text, "kind": m.kind}
                     for m in listing.timeline(session, call, timezone)],
    }


def _detail(row) -> dict:
    session = db.session()
    timezone = listing.zones(session).get(row.departement_code, "Europe/Paris")
    return {
        "reference": row.reference, "departement": row.departement_code,
        "occurred_at": row.occurred_at.astimezone(ZoneInfo(timezone)),
        "channel": row.channel.name, "source": row.source.name, "is_primary": row.is_primary,
        "thematique": _label(row.thematique), "motif": _label(row.motif),
        "sous_motif": _label(row.sous_motif), "comment": row.comment or "",
        "resolved": row.resolved_first_level, "escalated": row.escalated,
        "version": solicitations.state_token(session, row),
        "rows": [r.reference for r in solicitations.rows_of_call(session, row)],
        "call": _call(row.call, timezone) if row.call is not None and not row.call.test else None,
    }


def _instant(at: datetime, zone: ZoneInfo) -> datetime:
    """An instant of a body: with its offset, or a wall time of the département's zone, which
    must exist and be unambiguous there (not in the hour skipped or repeated at a DST change)."""
    if at.tzinfo is None:
        try:
            at = solicitations.local_instant(at, zone)
        except solicitations.AmbiguousTime as exc:
            abort(422, errors={"json": {"occurred_at": [f"{exc} : précisez le décalage horaire"]}})
    if not is_plausible_year(at.astimezone(UTC).year):
        abort(422, errors={"json": {"occurred_at": ["date hors des années acceptées"]}})
    return at


def _refused(exc: Exception, taxonomy_field: str | None = None):
    """A refusal of the operations, filed under the field of the request it is about."""
    message = str(exc)
    if "commentaire" in message:
        field = "comment"
    elif taxonomy_field is not None:
        field = taxonomy_field
    elif "sous-motif" in message:
        field = "sous_motif"
    elif "motif" in message:
        field = "motif"
    elif "thématique" in message:
        field = "thematique"
    else:
        field = "occurred_at" if "date" in message else "departement"
    abort(422, message=message, errors={"json": {field: [message]}})


# --- endpoints --------------------------------------------------------------------------------

@blp.route("/solicitations")
@blp.arguments(ListQuery, location="query", as_kwargs=True)
@blp.response(200, Page)
@policy.allow(policy.logged_in)
def list_solicitations(after=None, limit=listing.PAGE_SIZE, **query):
    """Les sollicitations des départements du compte, les plus récentes d'abord, une page à la
    fois (curseur : `next` de la page précédente dans `after`)."""
    if query.get("start") and query.get("end") and query["end"] < query["start"]:
        abort(422, errors={"query": {"end": ["la fin de la période précède son début"]}})
    if after is not None and listing.decode_cursor(after) is None:
        abort(422, errors={"query": {"after": ["curseur invalide : reprenez la liste au début"]}})
    filters = listing.Filters(
        start=query.get("start"), end=query.get("end"),
        departement=_checked_departement(query.get("departement"), "query"),
        outcome=Outcome[query["outcome"]] if query.get("outcome") else None,
        thematique=query.get("thematique"), to_qualify=query.get("to_qualify", False),
        channel=Channel[query["channel"]] if query.get("channel") else None)
    page = listing.list_page(db.session(), _scope(policy.acting_user()), filters, after, limit)
    return {"next": page.next_cursor, "items": [
        {"reference": r.reference, "occurred_at": r.local_at, "departement": r.departement,
         "channel": r.channel.name, "caller": r.caller,
         "outcome": r.outcome.name if r.outcome else None, "wait_seconds": r.wait_seconds,
         "talk_seconds": r.talk_seconds, "thematique": r.thematique, "motif": r.motif,
         "sous_motif": r.sous_motif, "call_id": r.call_id, "is_primary": r.is_primary,
         "comment": r.comment} for r in page.rows]}


@blp.route("/solicitations/<reference>")
@blp.response(200, Detail)
@policy.allow(policy.logged_in)
def get_solicitation(reference: str):
    """Une sollicitation : sa qualification, les autres lignes de son appel, l'appel et son
    déroulé."""
    return _detail(_row_or_abort(reference))


@blp.route("/solicitations/<reference>/qualification", methods=["PUT"])
@blp.arguments(Qualification)
@blp.response(200, Detail)
@policy.allow(policy.logged_in)
def qualify(body: dict, reference: str):
    """Qualifie l'appel de cette sollicitation : un motif, ou plusieurs (une ligne par motif).
    Renvoyer deux fois la même qualification ne change rien ; avec `version`, une
    qualification faite entre-temps par quelqu'un d'autre est refusée (409)."""
    row = _row_or_abort(reference)
    motifs = [(m["thematique"], m["motif"], m["sous_motif"] or None) for m in body["motifs"]]
    try:
        rows = solicitations.qualify_motifs(
            db.session(), row, motifs, comment=body["comment"], resolved=body["resolved"],
            escalated=body["escalated"], expected_state=body["version"],
            actor=Actor.api(policy.acting_user()))
    except solicitations.StaleQualification:
        db.rollback()
        abort(409, message="cet appel a été qualifié depuis la lecture de sa `version` (par "
                           "quelqu'un d'autre, ou par une requête précédente) : relisez-le")
    except solicitations.SolicitationError as exc:
        db.rollback()
        _refused(exc, "motifs")
    return _detail(rows[0])  # the call's first row: `reference` may have been removed


@blp.route("/solicitations", methods=["POST"])
@blp.arguments(NewSolicitation)
@blp.response(201, Detail)
@policy.allow(policy.logged_in)
def add_solicitation(body: dict):
    """Ajoute une sollicitation arrivée hors du SVI (courriel, appel direct, formulaire)."""
    code = _checked_departement(body["departement"], "json")
    at = _instant(body["occurred_at"], ZoneInfo(listing.zones(db.session())[code]))
    if body["motif"] and not body["thematique"]:
        abort(422, errors={"json": {"thematique": ["indiquez la thématique du motif"]}})
    if body["sous_motif"] and not body["motif"]:
        abort(422, errors={"json": {"motif": ["indiquez le motif du sous-motif"]}})
    try:
        row = solicitations.add(
            db.session(), departement=code, occurred_at=at, channel=Channel[body["channel"]],
            thematique=body["thematique"], motif=body["motif"], sous_motif=body["sous_motif"],
            comment=body["comment"], resolved=body["resolved"], escalated=body["escalated"],
            actor=Actor.api(policy.acting_user()))
    except solicitations.SolicitationError as exc:
        db.rollback()
        _refused(exc)
    return _detail(row)


@blp.route("/calls/<int:call_id>")
@blp.response(200, CallOut)
@policy.allow(policy.logged_in)
def get_call(call_id: int):
    """Un appel : ses lignes composées et son déroulé en français (heure locale du département)."""
    call = db.session().get(Call, call_id) if 0 < call_id < 2**31 else None
    user = policy.acting_user()
    if call is None or call.test:
        abort(404, message=f"appel introuvable : {call_id}")
    allowed = (permissions.may_read_departement(user, call.departement_code)
               if call.departement_code else permissions.sees_every_departement(user))
    if not allowed:
        abort(403, message="cet appel est d'un département auquel votre compte n'a pas accès")
    timezone = listing.zones(db.session()).get(call.departement_code or "", "Europe/Paris")
    return _call(call, timezone)
