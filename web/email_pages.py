"""Admin pages for the tickets' notification emails (« Courriels »): every template with the
version in force, an admin's version of a subject and body checked like a prompt override
(exactly the template's placeholders, the error tied to its field), and the shipped text
restored. The operations are tickets/emails.py's."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import StringField, TextAreaField
from wtforms.validators import Optional

from audit.operations import Actor
from core import db
from tickets import emails
from web import policy
from web.forms import Form

bp = Blueprint("email_pages", __name__, url_prefix="/admin/courriels")


class TemplateForm(Form):
    """A template's subject and body."""

    objet = StringField("Objet", validators=[Optional()])
    texte = TextAreaField("Texte", validators=[Optional()], render_kw={"rows": 16})


def _info(name: str) -> emails.TemplateInfo:
    """The template a URL names, or 404."""
    found = next((i for i in emails.overview(db.session()) if i.template.name == name), None)
    if found is None:
        abort(404)
    return found


def _page(info: emails.TemplateInfo, form: TemplateForm, status: int = 200):
    return render_template("admin/email.html", title=f"Courriel « {info.template.label} »",
                           info=info, form=form), status


@bp.get("")
@policy.allow(policy.admin)
def index():
    """Every notification email: who receives it, its subject in force, modified or not."""
    return render_template("admin/emails.html", title="Courriels",
                           templates=emails.overview(db.session()))


@bp.get("/<name>")
@policy.allow(policy.admin)
def edit(name: str):
    """Edit one template."""
    info = _info(name)
    return _page(info, TemplateForm(formdata=None, objet=info.subject, texte=info.body))


def _tie(form: TemplateForm, name: str, message: str) -> None:
    """Put a refusal on the field it is about: the subject, the body, or (placeholders) the
    body, and the subject too when it holds an unknown value."""
    head = " : ".join(message.split(" : ")[:2])  # "Courriel « … », objet : …", "… : objet vide."
    if "objet" in head and "texte" not in head:
        form.objet.errors = [*form.objet.errors, message]
        return
    form.texte.errors = [*form.texte.errors, message]
    try:
        expected = set(emails.template(name).placeholders)
        unknown = emails._used(form.objet.data or "") - expected
    except (ValueError, emails.EmailTemplateError):
        return
    if unknown:
        form.objet.errors = [*form.objet.errors, "valeur inconnue : "
                             + ", ".join("{" + n + "}" for n in sorted(unknown))]


@bp.post("/<name>")
@policy.allow(policy.admin)
def save(name: str):
    """Save the admins' version, or restore the shipped text (« Rétablir le texte d'origine »)."""
    info = _info(name)
    form = TemplateForm()
    if not form.validate_on_submit():
        return _page(info, form, 400)
    actor = Actor.user(current_user)
    try:
        if request.form.get("action") == "retablir":
            changed = emails.restore_template(db.session(), actor, name)
            done = "Texte d'origine rétabli."
        else:
            changed = emails.set_template(db.session(), actor, name, form.objet.data or "",
                                          form.texte.data or "")
            done = "Courriel enregistré : il est utilisé dès le prochain envoi."
    except emails.EmailTemplateError as exc:
        db.rollback()
        _tie(form, name, str(exc))
        return _page(info, form, 400)
    flash(done if changed else "Aucune modification.", "success" if changed else "info")
    return redirect(url_for("email_pages.edit", name=name))
