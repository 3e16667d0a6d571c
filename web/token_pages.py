"""« Mes jetons d'API »: a user creates personal API tokens (each secret shown once, never
stored in clear) and revokes them. The CLI does the same (`flask tokens …`)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import IntegerField, StringField
from wtforms.validators import InputRequired, NumberRange, Optional

from accounts import tokens
from audit.operations import Actor
from core import db
from web import policy
from web.forms import Form

bp = Blueprint("token_pages", __name__, url_prefix="/mon-compte/jetons")


class TokenForm(Form):
    name = StringField("Nom du jeton", validators=[InputRequired("Donnez un nom au jeton.")],
                       render_kw={"maxlength": 80, "autocomplete": "off"})
    days = IntegerField("Durée de validité (jours)", validators=[
        Optional(), NumberRange(1, tokens.MAX_DAYS, f"De 1 à {tokens.MAX_DAYS} jours.")])


class RevokeForm(Form):
    """Only the CSRF token: the URL names the token to revoke."""


def _page(form: TokenForm, secret: str | None = None, status: int = 200):
    user = current_user._get_current_object()
    return render_template("tokens/index.html", title="Mes jetons d'API", form=form,
                           revoke=RevokeForm(), secret=secret,
                           rows=tokens.listed(db.session(), user), state=tokens.state), status


@bp.get("/")
@policy.allow(policy.logged_in)
def index():
    """The user's tokens and the form to create one."""
    return _page(TokenForm(formdata=None))


@bp.post("/")
@policy.allow(policy.logged_in)
def create():
    """Create a token and show its secret, once (never in a redirect or a flash: both would
    keep it in the session cookie)."""
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(form, status=400)
    user = current_user._get_current_object()
    try:
        _, secret = tokens.create(db.session(), Actor.user(user), user, form.name.data,
                                  form.days.data)
    except tokens.TokenError as exc:
        form.name.errors = [str(exc)[0].upper() + str(exc)[1:] + "."]
        return _page(form, status=400)
    return _page(TokenForm(formdata=None), secret=secret, status=201)


@bp.post("/<int:token_id>/revoquer")
@policy.allow(policy.logged_in)
def revoke(token_id: int):
    """Revoke one of the user's own tokens."""
    if not RevokeForm().validate_on_submit():
        abort(400)
    token = tokens.find(db.session(), token_id) if 0 < token_id < 2**31 else None
    if token is None or token.user_id != current_user.id:
        abort(404)
    tokens.revoke(db.session(), Actor.user(current_user), token)
    flash(f"Jeton « {token.name} » révoqué : il ne fonctionne plus.", "success")
    return redirect(url_for("token_pages.index"))
