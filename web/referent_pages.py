"""« Mes appels »: the calls and solicitations of the user's départements (every département for
admins and the national team), a call's timeline, qualification (one or several motifs), rows
added by hand, and the import of a hand-filled workbook. Views only load, check and call the
operations the CLI uses (tracking/solicitations.py, tracking/workbook_import.py)."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.file import FileAllowed, FileField, FileRequired
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import (BooleanField, DateField, FieldList, FormField, HiddenField, SelectField,
                     TextAreaField, TimeField)
from wtforms import Form as FieldGroup
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Optional, ValidationError

from accounts import permissions
from audit.operations import Actor
from core import db
from directory.reference import official_order, territories
from tracking import listing, solicitations, workbook_import
from tracking.models import Channel, Motif, Outcome, Thematique
from web import policy
from web.forms import Form, plausible_year

bp = Blueprint("referent_pages", __name__, url_prefix="/appels")

def _choices(pairs, optgroup: str | None = None) -> list[SelectChoice]:
    """(value, label) pairs as a select's options, in an <optgroup> when given."""
    return [SelectChoice(value, label, optgroup=optgroup) for value, label in pairs]


YES_NO = _choices([("", "Non renseigné"), ("oui", "Oui"), ("non", "Non")])
#: Motif rows offered on the qualification form (the first one is required).
MOTIF_ROWS = 3


# --- helpers --------------------------------------------------------------------------------

def _visible() -> list[str]:
    """The département codes the current user may read, in official order."""
    return permissions.visible_codes(current_user, official_order(list(territories())))


def _scope() -> list[str] | None:
    """The départements list queries are restricted to (None: every département)."""
    return None if permissions.sees_every_departement(current_user) else _visible()


def _departement_choices(codes: list[str]) -> list[tuple[str, str]]:
    names = territories()
    return _choices((code, f"{code} – {names[code].name}") for code in codes)


def _taxonomy(held: frozenset[str] = frozenset()):
    """Active thématiques with their motifs and sous-motifs, in their order, and the retired
    thématiques `held` names (see MotifEntry.setup)."""
    return db.session().scalars(
        select(Thematique).where(Thematique.active | Thematique.key.in_(held))
        .options(selectinload(Thematique.motifs).selectinload(Motif.sous_motifs))
        .order_by(Thematique.position)).all()


def _held(row) -> frozenset[str]:
    """The taxonomy entries `row`'s call holds, as the form's lists name them."""
    return frozenset(value for r in solicitations.rows_of_call(db.session(), row)
                     for value in _motif_choice(r).values() if value)


def _yes_no(value: str | None) -> bool | None:
    return {"oui": True, "non": False}.get(value or "")


def _as_choice(value: bool | None) -> str:
    return "" if value is None else ("oui" if value else "non")


def _row_or_abort(reference: str):
    """The row a URL names: 404 when unknown, 403 outside the user's départements."""
    try:
        row = solicitations.by_reference(db.session(), reference)
    except solicitations.SolicitationError:
        abort(404)
    if not permissions.may_read_departement(current_user, row.departement_code):
        abort(403)
    return row


# --- forms ----------------------------------------------------------------------------------

class FilterForm(Form):
    """The list's filters, read from the query string (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False
        locales = ["fr"]

    du = DateField("Du", validators=[Optional(), plausible_year])
    au = DateField("Au (inclus)", validators=[Optional(), plausible_year])
    departement = SelectField("Département", validators=[Optional()])
    issue = SelectField("Issue de l'appel", validators=[Optional()],
                        choices=_choices([("", "Toutes")] + [(o.name, o.value.capitalize()) for o in Outcome]))
    thematique = SelectField("Thématique", validators=[Optional()])
    canal = SelectField("Canal", validators=[Optional()],
                        choices=_choices([("", "Tous")] + [(c.name, c.value) for c in Channel]))
    a_qualifier = BooleanField("À qualifier seulement")

    def setup(self, codes: list[str], thematiques) -> FilterForm:
        """Offer the user's départements and the taxonomy."""
        self.departement.choices = _choices([("", "Tous")]) + _departement_choices(codes)
        self.thematique.choices = _choices([("", "Toutes")] + [(t.key, t.label) for t in thematiques])
        return self

    def validate_au(self, field):
        if field.data and self.du.data and field.data < self.du.data:
            raise ValidationError("la fin de la période précède son début")

    def filters(self) -> listing.Filters:
        """The filters the valid fields say (a refused field narrows nothing)."""
        def ok(field):
            return field.data if not field.errors and field.data else None
        return listing.Filters(
            start=ok(self.du), end=ok(self.au), departement=ok(self.departement),
            outcome=Outcome[self.issue.data] if ok(self.issue) else None,
            thematique=ok(self.thematique), to_qualify=bool(self.a_qualifier.data),
            channel=Channel[self.canal.data] if ok(self.canal) else None)


class MotifEntry(FieldGroup):
    """One motif: thématique, motif within it, sous-motif within the motif."""

    thematique = SelectField("Thématique", validators=[Optional()])
    motif = SelectField("Motif", validators=[Optional()])
    sous_motif = SelectField("Sous-motif", validators=[Optional()])

    def setup(self, thematiques, number: int | None = None,
              held: frozenset[str] = frozenset()) -> None:
        """Offer the taxonomy: motifs grouped by thématique, sous-motifs by motif; active
        entries, and the retired ones `held` names ("them", "them/motif", "them/motif/sous"):
        a call keeps a motif retired since it was chosen when its form is saved again."""
        def offered(item, key: str) -> bool:
            return item.active or key in held

        def label(item) -> str:
            return item.label if item.active else f"{item.label} (retiré)"
        them = [t for t in thematiques if offered(t, t.key)]
        motifs = [(t, m) for t in them for m in t.motifs if offered(m, f"{t.key}/{m.key}")]
        self.thematique.choices = _choices([("", "À qualifier")] + [(t.key, label(t)) for t in them])
        self.motif.choices = _choices([("", "À qualifier")]) + [
            choice for t in them for choice in _choices(
                [(f"{t.key}/{m.key}", label(m)) for tt, m in motifs if tt is t], label(t))]
        self.sous_motif.choices = _choices([("", "Aucun")]) + [
            choice for t, m in motifs for choice in _choices(
                [(f"{t.key}/{m.key}/{s.key}", label(s)) for s in m.sous_motifs
                 if offered(s, f"{t.key}/{m.key}/{s.key}")], f"{label(t)} – {label(m)}")]
        if number is not None:
            for field in (self.thematique, self.motif, self.sous_motif):
                field.label.text = f"{field.label.text} (motif {number})"

    def spec(self, required: bool) -> tuple[str, str, str | None] | None:
        """(thématique, motif, sous-motif) keys, None when empty; errors set on the fields."""
        them, motif, sous = self.thematique.data or "", self.motif.data or "", self.sous_motif.data or ""
        if not (them or motif or sous):
            if required:
                self.thematique.errors.append("choisissez la thématique")
                self.motif.errors.append("choisissez le motif")
            return None
        if not them:
            self.thematique.errors.append("choisissez la thématique")
            return None
        if not motif:
            self.motif.errors.append("choisissez le motif")
            return None
        motif_them, _, motif_key = motif.partition("/")
        if motif_them != them:
            self.motif.errors.append("ce motif n'appartient pas à la thématique choisie")
            return None
        sous_key = None
        if sous:
            sous_them, sous_motif_key, sous_key = (sous.split("/") + ["", ""])[:3]
            if (sous_them, sous_motif_key) != (them, motif_key):
                self.sous_motif.errors.append("ce sous-motif n'appartient pas au motif choisi")
                return None
        return them, motif_key, sous_key


class QualifyForm(Form):
    """Qualify a row: one motif, or several (the row is split, one row per motif)."""

    #: The call's qualification when the form was shown (solicitations.state_token).
    etat = HiddenField()
    motifs = FieldList(FormField(MotifEntry), min_entries=MOTIF_ROWS,
                       max_entries=solicitations.MAX_MOTIFS)
    commentaire = TextAreaField("Commentaire", validators=[Optional()], render_kw={"rows": 3})
    resolu = SelectField("Résolu au niveau 1", choices=YES_NO, validators=[Optional()])
    escalade = SelectField("Escaladé à l'assistance nationale", choices=YES_NO, validators=[Optional()])

    def setup(self, thematiques, held: frozenset[str] = frozenset()) -> QualifyForm:
        """Offer the taxonomy on every motif row, with the retired entries the call holds."""
        for number, entry in enumerate(self.motifs.entries, start=1):
            entry.form.setup(thematiques, number, held)
        return self

    def specs(self) -> list[tuple[str, str, str | None]]:
        """Every motif filled in, the first one required; errors set on the fields."""
        found = [entry.form.spec(required=(i == 0)) for i, entry in enumerate(self.motifs.entries)]
        return [spec for spec in found if spec is not None]


class AddForm(Form):
    """A solicitation that did not go through the phone menu."""

    departement = SelectField("Département", validators=[InputRequired("choisissez le département")])
    jour = DateField("Date", validators=[InputRequired("indiquez la date"), plausible_year])
    heure = TimeField("Heure locale du département", validators=[InputRequired("indiquez l'heure")])
    canal = SelectField("Canal", validators=[InputRequired("choisissez le canal")],
                        choices=_choices([("", "Choisir")] + [(c.name, c.value) for c in Channel
                                                              if c is not Channel.phone_svi]))
    motif = FormField(MotifEntry)
    commentaire = TextAreaField("Commentaire", validators=[Optional()], render_kw={"rows": 3})
    resolu = SelectField("Résolu au niveau 1", choices=YES_NO, validators=[Optional()])
    escalade = SelectField("Escaladé à l'assistance nationale", choices=YES_NO, validators=[Optional()])

    def setup(self, codes: list[str], thematiques) -> AddForm:
        """Offer the user's départements and the taxonomy."""
        self.departement.choices = _choices([("", "Choisir")]) + _departement_choices(codes)
        self.motif.form.setup(thematiques)
        return self


class ImportForm(Form):
    """A hand-filled workbook to import."""

    fichier = FileField("Classeur complété (.xlsx)", validators=[
        FileRequired("choisissez un fichier"),
        FileAllowed(["xlsx"], "seuls les classeurs .xlsx sont acceptés")])


def _operation_error(form, message: str, motif_field) -> None:
    """Tie an operation's refusal to the field it is about."""
    target = form.commentaire if "commentaire" in message else motif_field
    target.errors = [*target.errors, message]


# --- views ----------------------------------------------------------------------------------

@bp.get("/")
@policy.allow(policy.logged_in)
def index():
    """The user's calls and solicitations, newest first, filtered, a page at a time."""
    codes = _visible()
    form = FilterForm(formdata=request.args).setup(codes, _taxonomy())
    form.validate()
    page = listing.list_page(db.session(), _scope(), form.filters(), request.args.get("apres"))
    kept = {k: v for k, v in request.args.items(multi=False) if k != "apres" and v}
    return render_template("referents/index.html", title="Mes appels", form=form, page=page,
                           kept=kept, first_page=bool(request.args.get("apres")),
                           duration=listing.duration)


@bp.get("/<reference>")
@policy.allow(policy.logged_in)
def detail(reference: str):
    """One solicitation: every row of its call, the call's timeline, the qualification form.

    The form holds the call's whole qualification — every motif (one per row, the call's first
    row first), the call's comment and follow-up, as on its first row — since saving it makes
    the call's rows exactly the motifs sent: saved unchanged, it changes nothing."""
    row = _row_or_abort(reference)
    rows = solicitations.rows_of_call(db.session(), row)
    first = rows[0]
    form = QualifyForm(data={
        "motifs": [_motif_choice(r) for r in rows],
        "commentaire": first.comment, "resolu": _as_choice(first.resolved_first_level),
        "escalade": _as_choice(first.escalated),
        "etat": solicitations.state_token(db.session(), row)})
    held = _held(row)
    return _detail_page(row, form.setup(_taxonomy(held), held))


def _motif_choice(row) -> dict[str, str]:
    """A row's motif as the form's three lists name it."""
    them, motif, sous = row.thematique, row.motif, row.sous_motif
    return {"thematique": them.key if them else "",
            "motif": f"{them.key}/{motif.key}" if motif else "",
            "sous_motif": f"{them.key}/{motif.key}/{sous.key}" if sous else ""}


def _detail_page(row, form, status: int = 200):
    session = db.session()
    timezone = listing.zones(session).get(row.departement_code, "Europe/Paris")
    moments = listing.timeline(session, row.call, timezone) if row.call is not None else []
    return render_template(
        "referents/detail.html", title=f"Sollicitation {row.reference}", row=row, form=form,
        rows=listing.rows_of(session, row), moments=moments, zone=ZoneInfo(timezone),
        name=territories()[row.departement_code].name if row.departement_code in territories() else "",
        duration=listing.duration), status


@bp.post("/<reference>/qualifier")
@policy.allow(policy.logged_in)
def qualify(reference: str):
    """Qualify a row with one motif, or split it into several, as `solicitations split` does."""
    row = _row_or_abort(reference)
    held = _held(row)
    form = QualifyForm().setup(_taxonomy(held), held)
    valid = form.validate_on_submit()
    specs = form.specs()
    if not valid or error_count(form):
        return _detail_page(row, form, 400)
    try:
        rows = solicitations.qualify_motifs(
            db.session(), row, specs, comment=form.commentaire.data or "",
            resolved=_yes_no(form.resolu.data), escalated=_yes_no(form.escalade.data),
            expected_state=form.etat.data or "", actor=Actor.user(current_user))
    except solicitations.StaleQualification:
        db.rollback()
        flash("Cet appel a été qualifié entre-temps par quelqu'un d'autre : rien n'a été "
              "enregistré. Voici sa qualification actuelle ; refaites la vôtre si besoin.", "error")
        return redirect(url_for("referent_pages.detail", reference=row.reference))
    except solicitations.SolicitationError as exc:
        _operation_error(form, str(exc), form.motifs.entries[0].form.motif)
        return _detail_page(row, form, 400)
    flash(f"Sollicitation qualifiée : {len(rows)} ligne(s), une par motif."
          if len(rows) > 1 else "Sollicitation qualifiée.", "success")
    # The call's first row: the row the form was on may have been removed (one motif fewer).
    return redirect(url_for("referent_pages.detail", reference=rows[0].reference))


def error_count(form) -> int:
    """How many errors a form holds (nested fields included)."""
    from web.forms import error_list
    return len(error_list(form))


@bp.route("/nouvelle", methods=["GET", "POST"])
@policy.allow(policy.logged_in)
def new():
    """Add a solicitation that did not go through the SVI (email, direct call, form)."""
    codes = _visible()
    form = AddForm().setup(codes, _taxonomy())
    if request.method == "GET" and len(codes) == 1:
        form.departement.data = codes[0]
    spec = _add_spec(form) if form.validate_on_submit() else False
    if spec is False:
        return render_template("referents/new.html", title="Ajouter une sollicitation",
                               form=form), 200 if request.method == "GET" else 400
    code = form.departement.data
    zone = ZoneInfo(listing.zones(db.session())[code])
    try:
        at = solicitations.local_instant(datetime.combine(form.jour.data, form.heure.data), zone)
    except solicitations.AmbiguousTime as exc:
        form.heure.errors = [*form.heure.errors, f"{exc} : indiquez une heure voisine"]
        return render_template("referents/new.html", title="Ajouter une sollicitation",
                               form=form), 400
    try:
        row = solicitations.add(
            db.session(), departement=code, occurred_at=at, channel=Channel[form.canal.data],
            thematique=spec[0] if spec else None, motif=spec[1] if spec else None,
            sous_motif=spec[2] if spec else None, comment=form.commentaire.data or "",
            resolved=_yes_no(form.resolu.data), escalated=_yes_no(form.escalade.data),
            actor=Actor.user(current_user))
    except solicitations.SolicitationError as exc:
        _operation_error(form, str(exc), form.motif.form.motif)
        return render_template("referents/new.html", title="Ajouter une sollicitation",
                               form=form), 400
    flash(f"Sollicitation {row.reference} ajoutée.", "success")
    return redirect(url_for("referent_pages.detail", reference=row.reference))


def _add_spec(form: AddForm):
    """The motif of the add form: keys, None (à qualifier, or a thématique alone), or False when
    a field is wrong (errors set)."""
    entry = form.motif.form
    if entry.thematique.data and not entry.motif.data and not entry.sous_motif.data:
        return (entry.thematique.data, None, None)
    before = error_count(form)
    spec = entry.spec(required=False)
    return False if error_count(form) > before else spec


@bp.route("/import", methods=["GET", "POST"])
@policy.allow(policy.logged_in)
def import_workbook():
    """Import a hand-filled workbook: all or nothing, every wrong cell named."""
    form = ImportForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("referents/import.html", title="Importer un classeur", form=form,
                               errors=[], problem=None), 200 if request.method == "GET" else 400
    allowed = None if permissions.sees_every_departement(current_user) else set(_visible())
    with tempfile.TemporaryDirectory(prefix="svi-import-") as folder:
        path = Path(folder) / ("classeur" + Path(form.fichier.data.filename or "").suffix.lower())
        form.fichier.data.save(path)
        try:
            actor = Actor.file_import(form.fichier.data.filename or "classeur",
                                      Actor.user(current_user))
            summary = workbook_import.import_file(db.session(), path, actor=actor, allowed=allowed)
        except workbook_import.ImportRefused as exc:
            current_app.logger.info("import de classeur refusé : %s", exc)
            return render_template("referents/import.html", title="Importer un classeur",
                                   form=ImportForm(formdata=None), errors=exc.errors,
                                   problem=str(exc)), 400
    flash(summary, "success")
    return redirect(url_for("referent_pages.index"))
