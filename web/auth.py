"""Login, logout and password reset by an emailed, time-limited, single-use link."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from accounts import operations, passwords
from accounts.models import User
from audit.operations import Actor
from core import db, mail
from web import policy
from web.extensions import limiter, login_manager

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def _load_user(value: str) -> User | None:
    return operations.from_session_id(db.session(), value)


class LoginForm(FlaskForm):
    email = EmailField("Adresse électronique", validators=[DataRequired("Indiquez votre adresse.")])
    password = PasswordField("Mot de passe", validators=[DataRequired("Indiquez votre mot de passe.")])


class ForgotForm(FlaskForm):
    email = EmailField("Adresse électronique", validators=[DataRequired("Indiquez votre adresse.")])


class ResetForm(FlaskForm):
    password = PasswordField("Nouveau mot de passe", validators=[
        DataRequired("Choisissez un mot de passe."),
        Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH,
               message=f"Au moins {passwords.MIN_LENGTH} caractères.")])
    confirm = PasswordField("Confirmez le mot de passe", validators=[
        EqualTo("password", "Les deux mots de passe diffèrent.")])


def _account_key() -> str:
    return "compte:" + (request.form.get("email") or "").strip().lower()


def _failed(response) -> bool:
    return response.status_code != 302  # a successful login redirects


def _safe_next(target: str | None) -> str | None:
    """Only a path of this site: never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/connexion", methods=["GET", "POST"])
@policy.allow(policy.public)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"],
               deduct_when=_failed)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_account_key, deduct_when=_failed)
def login():
    """The login page; `/` sends anonymous visitors here."""
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = operations.authenticate(db.session(), form.email.data, form.password.data)
        if user is not None:
            session.clear()
            session.permanent = True
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("home.index"))
        error = "Adresse ou mot de passe incorrect, ou compte désactivé."
    return render_template("auth/login.html", title="Connexion", form=form, error=error)


@bp.post("/deconnexion")
@policy.allow(policy.public)
def logout():
    """End the session (a form with its CSRF token, never a link)."""
    logout_user()
    session.clear()
    flash("Vous êtes déconnecté.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/mot-de-passe-oublie", methods=["GET", "POST"])
@policy.allow(policy.public)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"])
def forgot():
    """Ask for a reset link; the answer never says whether the account exists."""
    form = ForgotForm()
    if form.validate_on_submit():
        user = operations.find(db.session(), form.email.data)
        if user is not None and user.active:
            token = operations.reset_token(current_app.config["SECRET_KEY"], user)
            link = _public_url(url_for("auth.reset", token=token))
            minutes = operations.RESET_MAX_AGE // 60
            _send_reset(user.email, link, minutes)
        flash("Si un compte actif correspond à cette adresse, un lien vient de lui être envoyé. "
              f"Il est valable {operations.RESET_MAX_AGE // 60} minutes.", "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot.html", title="Mot de passe oublié", form=form)


def _send_reset(email: str, link: str, minutes: int) -> None:
    """Mail the link; a mail failure is logged, and the page says the same as for anyone."""
    try:
        mail.send(current_app._get_current_object(), to=[email],
                  subject="Assistance téléphonique : choisir un nouveau mot de passe",
                  body=(f"Bonjour,\n\nPour choisir un nouveau mot de passe, ouvrez ce lien "
                        f"dans les {minutes} minutes :\n\n{link}\n\nLe lien ne sert qu'une "
                        "fois. Si vous n'avez rien demandé, ignorez ce message : votre mot "
                        "de passe reste inchangé.\n"))
    except mail.MailError as exc:
        current_app.logger.error("lien de réinitialisation non envoyé : %s", exc)


@bp.route("/reinitialiser/<token>", methods=["GET", "POST"])
@policy.allow(policy.public)
def reset(token: str):
    """Choose a new password from an emailed link."""
    user = operations.user_for_reset(db.session(), current_app.config["SECRET_KEY"], token)
    if user is None:
        flash("Ce lien n'est plus valable (déjà utilisé ou expiré). Demandez-en un nouveau.",
              "error")
        return redirect(url_for("auth.forgot"))
    form = ResetForm()
    if form.validate_on_submit():
        try:
            operations.set_password(db.session(), Actor.user(user), user, form.password.data)
        except operations.AccountError as exc:
            form.password.errors.append(str(exc)[0].upper() + str(exc)[1:] + ".")
        else:
            logout_user()
            flash("Mot de passe changé. Connectez-vous avec le nouveau.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", title="Nouveau mot de passe", form=form)


def _public_url(path: str) -> str:
    base = current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")
    return base + path
