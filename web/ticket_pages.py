"""« Tickets »: the tickets a user may read (a referent: their départements'; the national team:
the escalated and technical ones first; admins: all), filtered, a page at a time; a ticket's
detail with its history and its actions (take, status, comment, escalate, close, incident); the
voicemail, streamed from Twilio through the service; a ticket created from a solicitation; the
incidents of the national team. Views only load, check and call tickets/operations.py and
tickets/incidents.py, as the CLI and the API do."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   request, url_for)
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms import (BooleanField, DateTimeLocalField, EmailField, SelectField, StringField,
                     TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from accounts import permissions
from accounts.models import Role
from audit.operations import Actor
from core import db
from directory.reference import official_order, territories
from tickets import incidents, operations, recordings
from tickets.models import (OPEN_STATUSES, ClosureStatus, Incident, Ticket,
                            TicketKind, TicketStatus)
from tracking import listing, solicitations
from tracking.models import Solicitation
from web import policy
from web.forms import Form

bp = Blueprint("ticket_pages", __name__, url_prefix="/tickets")

PAGE_SIZE = 50
PARIS = "Europe/Paris"
#: Closure statuses a person may choose (« délai dépassé » is the automatic closure's).
CLOSURES = [ClosureStatus.by_referent, ClosureStatus.by_national, ClosureStatus.confirmed]


# --- helpers --------------------------------------------------------------------------------

def _choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as a select's options."""
    return [SelectChoice(value, label) for value, label in pairs]


def _zones() -> dict[str, str]:
    return listing.zones(db.session())


def local(at: datetime | None, code: str | None, zones: dict[str, str] | None = None) -> str:
    """A stored instant in the département's local time: "21/12/2026 10:00" ("—" if none)."""
    if at is None:
        return "—"
    zone = (zones if zones is not None else _zones()).get(code or "", PARIS)
    return at.astimezone(ZoneInfo(zone)).strftime("%d/%m/%Y %H:%M")


def who(label: str) -> str:
    """An event's author as people read it: the person's address, or what acted."""
    kind, _, name = (label or "").partition(":")
    return {"utilisateur": name, "api": f"{name} (API)", "cli": f"ligne de commande ({name})",
            "système": f"système ({name})"}.get(kind, label)


def _now() -> datetime:
    return operations.now_of(db.session())


def _ticket_or_abort(number: str) -> Ticket:
    """The ticket a URL names: 404 when unknown, 403 when the user may not read it."""
    try:
        ticket = operations.by_number(db.session(), number)
    except operations.TicketError:
        abort(404)
    if not operations.may_read(current_user, ticket):
        abort(403)
    return ticket


def _handled_or_abort(number: str) -> Ticket:
    ticket = _ticket_or_abort(number)
    if not operations.may_handle(current_user, ticket):
        abort(403)
    return ticket


def _visible_codes() -> list[str]:
    return permissions.visible_codes(current_user, official_order(list(territories())))


def _departement_choices(codes) -> list[tuple[str, str]]:
    names = territories()
    return [(code, f"{code} – {names[code].name}") for code in codes]


def _actor() -> Actor:
    return Actor.user(current_user)


def _csrf_failed(form) -> bool:
    return bool(getattr(form, "csrf_token", None) is not None and form.csrf_token.errors)


# --- forms ----------------------------------------------------------------------------------

class FilterForm(Form):
    """The list's filters, read from the query string (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False
        locales = ["fr"]

    statut = SelectField("Statut", default="ouverts", validators=[Optional()], choices=_choices(
        [("ouverts", "À traiter (nouveau, en cours, en attente)"), ("", "Tous")]
        + [(s.name, s.value.capitalize()) for s in TicketStatus]))
    type = SelectField("Type", validators=[Optional()], choices=_choices(
        [("", "Tous")] + [(k.name, k.value.capitalize()) for k in TicketKind]))
    departement = SelectField("Département", validators=[Optional()])
    suivi = SelectField("Suivi par", validators=[Optional()], choices=_choices([
        ("", "Tous"), ("national", "L'équipe nationale"), ("departement", "Le département")]))
    en_retard = BooleanField("En retard seulement")
    a_moi = BooleanField("Attribués à moi seulement")

    def setup(self, codes: list[str]) -> FilterForm:
        self.departement.choices = _choices([("", "Tous")] + _departement_choices(codes))
        return self


class StatusForm(Form):
    statut = SelectField("Nouveau statut", validators=[InputRequired("choisissez le statut")])

    def setup(self, ticket: Ticket) -> StatusForm:
        allowed = operations.TRANSITIONS[ticket.status]
        self.statut.choices = _choices((s.name, s.value.capitalize()) for s in TicketStatus
                                       if s in allowed)
        return self


class CommentForm(Form):
    commentaire = TextAreaField(
        "Commentaire", render_kw={"rows": 4},
        validators=[InputRequired("écrivez le commentaire"),
                    Length(max=operations.MAX_TEXT,
                           message=f"{operations.MAX_TEXT} caractères au plus")])


class EscalateForm(Form):
    description = TextAreaField(
        "Description reformulée pour l'équipe nationale", render_kw={"rows": 5},
        validators=[InputRequired("reformulez la demande pour l'équipe nationale"),
                    Length(max=operations.MAX_TEXT,
                           message=f"{operations.MAX_TEXT} caractères au plus")])


class CloseForm(Form):
    cloture = SelectField("Statut de clôture", validators=[InputRequired("choisissez le statut de clôture")])
    note = TextAreaField("Commentaire de clôture (facultatif)", render_kw={"rows": 2},
                         validators=[Optional(), Length(max=operations.MAX_TEXT)])

    def setup(self, user, ticket: Ticket) -> CloseForm:
        national = permissions.has_role(user, Role.national, Role.admin)
        referent = operations.may_escalate(user, ticket)  # the département's referents, admins
        self.cloture.choices = _choices(
            (c.name, c.value.capitalize()) for c in CLOSURES
            if (national or c is not ClosureStatus.by_national)
            and (referent or c is not ClosureStatus.by_referent))
        return self


class LinkForm(Form):
    incident = SelectField("Incident", validators=[Optional()])

    def setup(self, ticket: Ticket) -> LinkForm:
        found = incidents.open_incidents(db.session(), for_ticket=ticket)
        if ticket.incident is not None and ticket.incident not in found:
            found.append(ticket.incident)
        self.incident.choices = _choices([("", "Aucun")] + [
            (str(i.id), f"n° {i.id} – {i.title}") for i in found])
        return self


class NewTicketForm(Form):
    titre = StringField("Titre (facultatif)", validators=[Optional(), Length(max=200)])
    description = TextAreaField("Description de la demande", render_kw={"rows": 5},
                                validators=[InputRequired("décrivez la demande"),
                                            Length(max=operations.MAX_TEXT)])
    courriel = EmailField("Adresse électronique du demandeur (facultatif)",
                          validators=[Optional(), Length(max=254)])
    national = BooleanField("Transmettre directement à l'équipe nationale")


class IncidentForm(Form):
    titre = StringField("Titre", validators=[InputRequired("donnez un titre à l'incident"),
                                             Length(max=200)])
    description = TextAreaField("Description (facultatif)", render_kw={"rows": 3},
                                validators=[Optional(), Length(max=operations.MAX_TEXT)])
    departement = SelectField("Département concerné", validators=[Optional()])

    def setup(self) -> IncidentForm:
        self.departement.choices = _choices([("", "Tous les départements")] + _departement_choices(
            official_order(list(territories()))))
        return self


class MessageForm(Form):
    message = TextAreaField("Message annoncé aux appelants", render_kw={"rows": 3},
                            validators=[Optional(), Length(max=incidents.MAX_MESSAGE)])
    jusqu_au = DateTimeLocalField("Fin de l'annonce (facultatif)", format="%Y-%m-%dT%H:%M",
                                  validators=[Optional()])


# --- the list -------------------------------------------------------------------------------

def _list_query(form: FilterForm, user, now: datetime):
    query = select(Ticket)
    scope = operations.visible(user)
    if scope is not None:
        query = query.where(scope)

    def ok(field):
        return field.data if not field.errors and field.data else None
    status = ok(form.statut)
    if status == "ouverts":
        query = query.where(Ticket.status.in_(OPEN_STATUSES))
    elif status in TicketStatus.__members__:
        query = query.where(Ticket.status == TicketStatus[status])
    if ok(form.type) in TicketKind.__members__:
        query = query.where(Ticket.kind == TicketKind[form.type.data])
    if ok(form.departement):
        query = query.where(Ticket.departement_code == form.departement.data)
    if ok(form.suivi) == "national":
        query = query.where(Ticket.national | Ticket.departement_code.is_(None))
    elif ok(form.suivi) == "departement":
        query = query.where(~Ticket.national, Ticket.departement_code.is_not(None))
    if form.en_retard.data:
        query = query.where(operations.late_condition(now))
    if form.a_moi.data:
        query = query.where(Ticket.assigned_to_id == user.id)
    return query


def _cursor(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and 0 < int(value) < 2**63 else None


@bp.get("/")
@policy.allow(policy.logged_in)
def index():
    """The tickets the user may read, newest first, filtered, a page at a time (keyset on id)."""
    codes = _visible_codes()
    args = request.args.copy()
    if "suivi" not in args and permissions.has_role(current_user, Role.national):
        args["suivi"] = "national"  # the national team's own tickets first
    form = FilterForm(formdata=args).setup(codes)
    form.validate()
    now = _now()
    session = db.session()
    query = _list_query(form, current_user, now)
    after = _cursor(request.args.get("apres"))
    page = query.options(selectinload(Ticket.assigned_to)).order_by(Ticket.id.desc())
    if after is not None:
        page = page.where(Ticket.id < after)
    tickets = list(session.scalars(page.limit(PAGE_SIZE + 1)))
    next_cursor = tickets[PAGE_SIZE - 1].id if len(tickets) > PAGE_SIZE else None
    tickets = tickets[:PAGE_SIZE]
    scope = operations.visible(current_user)
    late_query = select(func.count(Ticket.id)).where(operations.late_condition(now))
    if scope is not None:
        late_query = late_query.where(scope)
    kept = {k: v for k, v in args.items(multi=False) if k != "apres" and v}
    return render_template(
        "tickets/index.html", title="Tickets", form=form, tickets=tickets, now=now,
        zones=_zones(), local=local, next_cursor=next_cursor, kept=kept,
        first_page=after is not None, late_count=session.scalar(late_query) or 0)


# --- one ticket -----------------------------------------------------------------------------

def _rows(ticket: Ticket) -> list[Solicitation]:
    session = db.session()
    if ticket.solicitation is not None:
        return listing.rows_of(session, ticket.solicitation)
    if ticket.call_id is not None:
        return list(session.scalars(select(Solicitation).where(Solicitation.call_id == ticket.call_id)
                                    .order_by(Solicitation.id)))
    return []


def _detail_page(ticket: Ticket, status: int = 200, **forms):
    user = current_user
    handle = operations.may_handle(user, ticket)
    closed = ticket.status is TicketStatus.closed
    defaults = {
        "status_form": StatusForm(formdata=None).setup(ticket),
        "comment_form": CommentForm(formdata=None),
        "escalate_form": EscalateForm(formdata=None),
        "close_form": CloseForm(formdata=None).setup(user, ticket),
        "link_form": LinkForm(formdata=None, incident=str(ticket.incident_id or "")).setup(ticket),
    }
    defaults.update(forms)
    failed = next(iter(forms.values()), None)
    rows = _rows(ticket)
    call = ticket.call
    has_recording = call is not None and bool(call.recording_url)
    return render_template(
        "tickets/detail.html", title=f"Ticket {ticket.number}", ticket=ticket, rows=rows,
        now=_now(), zones=_zones(), local=local, who=who, may_handle=handle,
        may_escalate=(operations.may_escalate(user, ticket) and not ticket.national
                      and not closed),
        may_take=handle and ticket.status not in (TicketStatus.resolved, TicketStatus.closed)
        and not (ticket.assigned_to_id == user.id and ticket.status is TicketStatus.in_progress),
        closed=closed, has_recording=has_recording,
        recording_gone=call is not None and ticket.kind is TicketKind.voicemail
        and not has_recording,
        failed=failed, **defaults), status


@bp.get("/<number>")
@policy.allow(policy.logged_in)
def detail(number: str):
    """One ticket: its fields, the call and solicitation rows, the history and the actions."""
    ticket = _ticket_or_abort(number)
    if ticket.number != number:
        return redirect(url_for("ticket_pages.detail", number=ticket.number))
    return _detail_page(ticket)


def _done(ticket: Ticket, message: str):
    flash(message, "success")
    return redirect(url_for("ticket_pages.detail", number=ticket.number))


def _refused(ticket: Ticket, exc: operations.TicketError):
    """A refusal without a field to tie it to: nothing is kept, the message is shown."""
    if isinstance(exc, operations.TicketForbidden):
        abort(403, description=str(exc))
    db.rollback()
    flash(f"Rien n'a été enregistré : {exc}.", "error")
    return redirect(url_for("ticket_pages.detail", number=ticket.number))


@bp.post("/<number>/prendre")
@policy.allow(policy.logged_in)
def take(number: str):
    """Take the ticket: assigned to oneself, « en cours »."""
    ticket = _handled_or_abort(number)
    form = Form()
    if not form.validate_on_submit():
        abort(400, description="la page a expiré : rechargez-la et recommencez")
    try:
        operations.take(db.session(), _actor(), ticket, current_user, by=current_user)
    except operations.TicketError as exc:
        return _refused(ticket, exc)
    return _done(ticket, f"Vous avez pris en charge le ticket {ticket.number}.")


def _apply(ticket: Ticket, form_key: str, form, action, done: str, field=None):
    """Validate a ticket page's form, run the operation, answer: the page again with the error
    on its field (nothing kept), 403 when refused to this user, or the ticket with `done`.
    `field` names the field an operation's refusal is shown on (default: the form's first)."""
    if not form.validate_on_submit():
        return _detail_page(ticket, 400, **{form_key: form})
    try:
        action()
    except operations.TicketForbidden as exc:
        abort(403, description=str(exc))
    except operations.TicketError as exc:
        db.rollback()
        target = field(exc) if field else next(f for f in form if f.name != "csrf_token")
        target.errors = [str(exc)]
        return _detail_page(ticket, 400, **{form_key: form})
    return _done(ticket, done() if callable(done) else done)


@bp.post("/<number>/statut")
@policy.allow(policy.logged_in)
def set_status(number: str):
    """Move the ticket along its workflow."""
    ticket = _handled_or_abort(number)
    form = StatusForm().setup(ticket)
    return _apply(ticket, "status_form", form, lambda: operations.set_status(
        db.session(), _actor(), ticket, TicketStatus[form.statut.data], by=current_user),
        lambda: f"Statut du ticket : {ticket.status.value}.")


@bp.post("/<number>/commentaires")
@policy.allow(policy.logged_in)
def comment(number: str):
    """Add a comment to the history (never edited nor deleted)."""
    ticket = _handled_or_abort(number)
    form = CommentForm()
    return _apply(ticket, "comment_form", form, lambda: operations.comment(
        db.session(), _actor(), ticket, form.commentaire.data, by=current_user),
        "Commentaire ajouté.")


@bp.post("/<number>/escalader")
@policy.allow(policy.logged_in)
def escalate(number: str):
    """Hand the ticket to the national team, with a reformulated description: the département's
    referents and admins only (others: 403)."""
    ticket = _ticket_or_abort(number)
    if not operations.may_escalate(current_user, ticket):
        abort(403, description="seuls les référents du département et les administrateurs "
                               "peuvent escalader ce ticket")
    form = EscalateForm()
    return _apply(ticket, "escalate_form", form, lambda: operations.escalate(
        db.session(), _actor(), current_user, ticket, form.description.data),
        f"Ticket {ticket.number} transmis à l'équipe nationale ; une confirmation vous est "
        "envoyée par courriel.")


@bp.post("/<number>/clore")
@policy.allow(policy.logged_in)
def close(number: str):
    """Close the ticket with a closure status."""
    ticket = _handled_or_abort(number)
    form = CloseForm().setup(current_user, ticket)
    return _apply(ticket, "close_form", form, lambda: operations.close(
        db.session(), _actor(), ticket, ClosureStatus[form.cloture.data], by=current_user,
        text=form.note.data or None),
        lambda: f"Ticket {ticket.number} clos ({ticket.closure_status.value}).",
        field=lambda exc: form.note if "commentaire" in str(exc) else form.cloture)


@bp.post("/<number>/incident")
@policy.allow(policy.logged_in)
def link_incident(number: str):
    """Link the ticket to an open incident, or detach it."""
    ticket = _handled_or_abort(number)
    form = LinkForm().setup(ticket)

    def incident() -> Incident | None:
        return db.session().get(Incident, int(form.incident.data)) if form.incident.data else None
    return _apply(ticket, "link_form", form,
                  lambda: incidents.link(db.session(), _actor(), ticket, incident()),
                  lambda: (f"Ticket rattaché à l'incident n° {ticket.incident_id}."
                           if ticket.incident_id else "Ticket détaché de son incident."))


@bp.get("/<number>/enregistrement")
@policy.allow(policy.logged_in)
def recording(number: str):
    """The voicemail of the ticket's call, fetched from Twilio and handed on as it arrives: the
    recording's address at Twilio never reaches the browser."""
    ticket = _ticket_or_abort(number)
    call = ticket.call
    if call is None:
        abort(404)
    try:
        chunks, content_type, length = recordings.stream(current_app._get_current_object(), call)
    except recordings.RecordingError as exc:
        return render_template("errors/error.html", status=502,
                               title="Enregistrement indisponible",
                               description=f"{str(exc)[0].upper()}{str(exc)[1:]}."), 502
    if request.range is not None:
        # A player asking for bytes (Safari plays only from 206 answers; seeking everywhere):
        # the recording is read whole — a voicemail is short, and the size is capped — then
        # sliced by Werkzeug (206 with Content-Range, 416 for a range off the end).
        try:
            audio = recordings.read_whole(chunks, length)
        except recordings.RecordingError as exc:
            return render_template("errors/error.html", status=502,
                                   title="Enregistrement indisponible",
                                   description=f"{str(exc)[0].upper()}{str(exc)[1:]}."), 502
        response = Response(audio, mimetype=content_type)
        response.make_conditional(request, accept_ranges=True, complete_length=len(audio))
    else:
        response = Response(chunks, mimetype=content_type, direct_passthrough=True)
        if length is not None:
            response.content_length = length
        response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Disposition"] = f'inline; filename="{ticket.number}.mp3"'
    return response


# --- a ticket from a solicitation -----------------------------------------------------------

def _row_or_abort(reference: str) -> Solicitation:
    try:
        row = solicitations.by_reference(db.session(), reference)
    except solicitations.SolicitationError:
        abort(404)
    if not permissions.may_read_departement(current_user, row.departement_code):
        abort(403)
    return row


@bp.route("/depuis/<reference>", methods=["GET", "POST"])
@policy.allow(policy.logged_in)
def from_solicitation(reference: str):
    """Create a ticket from a call or solicitation row (« Créer un ticket »)."""
    row = _row_or_abort(reference)
    form = NewTicketForm()
    existing = list(db.session().scalars(select(Ticket).where(Ticket.solicitation_id == row.id)
                                         .order_by(Ticket.id)))
    technical = row.thematique is not None and row.thematique.key == operations.TECHNICAL_THEMATIQUE

    def page(status: int):
        return render_template("tickets/new.html", title=f"Créer un ticket – {row.reference}",
                               form=form, row=row, existing=existing, technical=technical,
                               zones=_zones(), local=local), status

    if request.method == "GET" or not form.validate_on_submit():
        return page(200 if request.method == "GET" else 400)
    try:
        ticket = operations.from_solicitation(
            db.session(), _actor(), row, form.description.data, national=bool(form.national.data),
            title=form.titre.data or None, requester_email=form.courriel.data or None)
    except operations.TicketError as exc:
        db.rollback()
        message = str(exc)
        target = (form.courriel if "adresse" in message else
                  form.titre if message.startswith("titre") else form.description)
        target.errors = [*target.errors, message]
        return page(400)
    return _done(ticket, f"Ticket {ticket.number} créé."
                 + (" Il est suivi par l'équipe nationale." if ticket.national else ""))


# --- incidents (national team and admins) ---------------------------------------------------

def _incident_or_abort(incident_id: int) -> Incident:
    incident = db.session().get(Incident, incident_id) if 0 < incident_id < 2**31 else None
    if incident is None:
        abort(404)
    return incident


def _incidents_page(form: IncidentForm, status: int = 200):
    session = db.session()
    counts = dict(session.execute(select(Ticket.incident_id, func.count(Ticket.id))
                                  .where(Ticket.incident_id.is_not(None))
                                  .group_by(Ticket.incident_id)).all())
    closed = list(session.scalars(select(Incident).where(Incident.closed_at.is_not(None))
                                  .order_by(Incident.closed_at.desc(), Incident.id.desc())
                                  .limit(20)))
    return render_template("tickets/incidents.html", title="Incidents", form=form,
                           open_incidents=incidents.open_incidents(session), closed=closed,
                           counts=counts, now=_now(), zones=_zones(), local=local), status


@bp.route("/incidents/", methods=["GET", "POST"])
@policy.allow(policy.every_departement)
def incident_list():
    """Open incidents (and the last closed ones); open a new one."""
    form = IncidentForm().setup()
    if request.method == "GET":
        return _incidents_page(form)
    if not form.validate_on_submit():
        return _incidents_page(form, 400)
    try:
        incident = incidents.create(db.session(), _actor(), form.titre.data,
                                    form.description.data or "",
                                    departement_code=form.departement.data or None)
    except operations.TicketError as exc:
        db.rollback()
        target = form.departement if "département" in str(exc) else form.titre
        target.errors = [str(exc)]
        return _incidents_page(form, 400)
    flash(f"Incident n° {incident.id} ouvert.", "success")
    return redirect(url_for("ticket_pages.incident", incident_id=incident.id))


def _incident_page(incident: Incident, form: MessageForm | None = None, status: int = 200):
    zones = _zones()
    zone = ZoneInfo(zones.get(incident.departement_code or "", PARIS))
    if form is None:
        until = incident.message_until.astimezone(zone).replace(tzinfo=None) \
            if incident.message_until else None
        form = MessageForm(formdata=None, message=incident.message or "", jusqu_au=until)
    tickets = list(db.session().scalars(select(Ticket).where(Ticket.incident_id == incident.id)
                                        .order_by(Ticket.id.desc())))
    return render_template("tickets/incident.html", title=f"Incident n° {incident.id}",
                           incident=incident, form=form, tickets=tickets, now=_now(),
                           zones=zones, local=local, zone_name=zone.key,
                           may_read=lambda t: operations.may_read(current_user, t)), status


@bp.get("/incidents/<int:incident_id>")
@policy.allow(policy.every_departement)
def incident(incident_id: int):
    """One incident: its phone message, its tickets, closing it."""
    return _incident_page(_incident_or_abort(incident_id))


@bp.post("/incidents/<int:incident_id>/message")
@policy.allow(policy.every_departement)
def incident_message(incident_id: int):
    """Set (or withdraw) the message the phone menu announces before routing, until an expiry."""
    found = _incident_or_abort(incident_id)
    form = MessageForm()
    if not form.validate_on_submit():
        return _incident_page(found, form, 400)
    withdraw = request.form.get("action") == "retirer"
    text = "" if withdraw else (form.message.data or "")
    if not withdraw and not text.strip():
        form.message.errors = ["écrivez le message, ou retirez-le"]
        return _incident_page(found, form, 400)
    until = None
    if form.jusqu_au.data and not withdraw:
        zone = ZoneInfo(_zones().get(found.departement_code or "", PARIS))
        until = form.jusqu_au.data.replace(tzinfo=zone)
    try:
        incidents.set_message(db.session(), _actor(), found, text, until)
    except operations.TicketError as exc:
        db.rollback()
        target = form.jusqu_au if "date" in str(exc) else form.message
        target.errors = [str(exc)]
        return _incident_page(found, form, 400)
    flash("Message retiré : il n'est plus annoncé." if withdraw
          else "Message enregistré : il est annoncé dès le prochain appel.", "success")
    return redirect(url_for("ticket_pages.incident", incident_id=found.id))


@bp.post("/incidents/<int:incident_id>/clore")
@policy.allow(policy.every_departement)
def incident_close(incident_id: int):
    """Close the incident; its message is no longer announced."""
    found = _incident_or_abort(incident_id)
    if not Form().validate_on_submit():
        abort(400, description="la page a expiré : rechargez-la et recommencez")
    try:
        incidents.close(db.session(), _actor(), found)
    except operations.TicketError as exc:
        db.rollback()
        flash(f"Rien n'a été enregistré : {exc}.", "error")
        return redirect(url_for("ticket_pages.incident", incident_id=found.id))
    flash(f"Incident n° {found.id} clos.", "success")
    return redirect(url_for("ticket_pages.incident", incident_id=found.id))
