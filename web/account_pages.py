"""Admins manage the accounts: every account (accounts created by single sign-on, waiting for a
role, first), its role and départements, enabled or not, its tie to the identity provider. The
same operations as `flask users …`, audited."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select
from wtforms import BooleanField, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from accounts import oidc, operations
from accounts.models import Role, User
from audit.operations import Actor
from core import db
from web import policy
from web.forms import Form

bp = Blueprint("account_pages", __name__, url_prefix="/admin/comptes")

ROLE_CHOICES = [SelectChoice("", "— Choisir un rôle —")] + [
    SelectChoice(r.name, r.value.capitalize()) for r in Role]


class RoleForm(Form):
    role = SelectField("Rôle", choices=ROLE_CHOICES)
    departements = StringField("Départements (référents)", render_kw={"autocomplete": "off"})
    active = BooleanField("Compte actif (il peut se connecter)")


class UnlinkForm(Form):
    """Only the CSRF token: the URL names the account."""


def _account(user_id: int) -> User:
    user = db.session().get(User, user_id) if 0 < user_id < 2**31 else None
    if user is None:
        abort(404)
    return user


def _codes(text: str | None) -> list[str]:
    return [c.strip().upper() for c in (text or "").replace(";", ",").split(",") if c.strip()]


@bp.get("/")
@policy.allow(policy.admin)
def index():
    """Every account; those waiting for a role first."""
    users = db.session().scalars(select(User).order_by(User.role.is_not(None), User.email)).all()
    waiting = sum(1 for u in users if u.role is None and u.active)
    return render_template("admin/accounts.html", title="Comptes", users=users, waiting=waiting,
                           provider=oidc.provider_name(current_app))


def _page(user: User, form: RoleForm, status: int = 200):
    return render_template("admin/account.html", title=f"Compte {user.email}", account=user,
                           form=form, unlink=UnlinkForm(), own=user.id == current_user.id,
                           provider=oidc.provider_name(current_app)), status


@bp.route("/<int:user_id>", methods=["GET", "POST"])
@policy.allow(policy.admin)
def edit(user_id: int):
    """Grant a role (and a referent's départements), enable or disable an account."""
    user = _account(user_id)
    if user.id == current_user.id:  # an admin cannot lock themselves out from here
        return _page(user, RoleForm(formdata=None))
    form = RoleForm(data={"role": user.role.name if user.role else "",
                          "departements": ", ".join(sorted(user.departement_codes)),
                          "active": user.active})
    if not form.validate_on_submit():
        return _page(user, form, 400 if form.is_submitted() else 200)
    if not form.role.data:
        form.role.errors.append("Choisissez un rôle.")
        return _page(user, form, 400)
    actor = Actor.user(current_user)
    try:
        operations.grant(db.session(), actor, user, Role[form.role.data],
                         _codes(form.departements.data)
                         if form.role.data == Role.referent.name else ())
    except operations.AccountError as exc:
        form.departements.errors.append(str(exc)[0].upper() + str(exc)[1:] + ".")
        return _page(user, form, 400)
    operations.set_active(db.session(), actor, user, bool(form.active.data))
    flash(f"Droits de {user.email} enregistrés : {user.role_label}"
          + (f", départements {', '.join(sorted(user.departement_codes))}"
             if user.departement_codes else "")
          + ("" if user.active else " (compte désactivé)") + ".", "success")
    return redirect(url_for("account_pages.index"))


@bp.post("/<int:user_id>/dissocier")
@policy.allow(policy.admin)
def unlink(user_id: int):
    """Untie an account from its identity at the provider (e.g. the agent changed identity
    provider): their next single sign-on ties it again through their email."""
    user = _account(user_id)
    if not UnlinkForm().validate_on_submit():
        abort(400)
    provider = oidc.provider_name(current_app)
    oidc.unlink(db.session(), Actor.user(current_user), user, provider)
    flash(f"Le compte {user.email} n'est plus associé à une identité {provider}.", "success")
    return redirect(url_for("account_pages.edit", user_id=user.id))
