"""Login, logout and password reset by an emailed, time-limited, single-use link."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from accounts import operations, passwords
from accounts.models import User
from audit.operations import Actor
from core import db, mail
from web.forms import Form
from web import policy
from web.extensions import limiter, login_manager

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def _load_user(value: str) -> User | None:
    return operations.from_session_id(db.session(), value)


class LoginForm(Form):
    email = EmailField("Adresse électronique", validators=[DataRequired("Indiquez votre adresse.")])
    password = PasswordField("Mot de passe", validators=[DataRequired("Indiquez votre mot de passe.")])


class ForgotForm(Form):
    email = EmailField("Adresse électronique", validators=[DataRequired("Indiquez votre adresse.")])


class ResetForm(Form):
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
    if any(ord(c) < 32 or c in "\x7f\\" for c in target):
        return None  # a line break would end in a 500 at the redirect (urlsplit drops it)
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
            session[policy.LOGIN_AT] = time.time()
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("home.index"))
        error = "Adresse ou mot de passe incorrect, ou compte désactivé."
    return render_template("auth/login.html", title="Connexion", form=form, error=error)


@bp.post("/deconnexion")
@policy.allow(policy.public)
def logout():
    """End the session, and every other one of the account (a form with its CSRF token); after
    a single sign-on, the provider's session too (web/sso_pages.py)."""
    from web import sso_pages
    id_token = session.get(sso_pages.ID_TOKEN) if current_user.is_authenticated else None
    if current_user.is_authenticated:
        operations.end_sessions(db.session(), current_user._get_current_object())
    logout_user()
    session.clear()
    away = sso_pages.provider_logout(id_token)
    if away is not None:
        return away
    flash("Vous êtes déconnecté.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/mot-de-passe-oublie", methods=["GET", "POST"])
@policy.allow(policy.public)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"])
@limiter.limit("3 per hour", methods=["POST"], key_func=_account_key)  # no mail flood
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
    """Mail the link from a thread of its own: the answer never waits for the mail server, so
    its timing says nothing of whether the account exists; a failure is logged."""
    app = current_app._get_current_object()
    body = (f"Bonjour,\n\nPour choisir un nouveau mot de passe, ouvrez ce lien dans les "
            f"{minutes} minutes :\n\n{link}\n\nLe lien ne sert qu'une fois. Si vous n'avez rien "
            "demandé, ignorez ce message : votre mot de passe reste inchangé.\n")

    def send():
        try:
            mail.send(app, to=[email], body=body,
                      subject="Assistance téléphonique : choisir un nouveau mot de passe")
        except mail.MailError as exc:
            app.logger.error("lien de réinitialisation non envoyé : %s", exc)

    threading.Thread(target=send, name="reset-mail", daemon=True).start()


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


class PasswordForm(Form):
    current = PasswordField("Mot de passe actuel", validators=[
        DataRequired("Indiquez votre mot de passe actuel.")])
    password = PasswordField("Nouveau mot de passe", validators=[
        DataRequired("Choisissez un mot de passe."),
        Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH,
               message=f"Au moins {passwords.MIN_LENGTH} caractères.")])
    confirm = PasswordField("Confirmez le nouveau mot de passe", validators=[
        EqualTo("password", "Les deux mots de passe diffèrent.")])


@bp.route("/mon-compte", methods=["GET", "POST"])
@policy.allow(policy.logged_in)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=lambda: f"compte:{current_user.get_id()}", deduct_when=_failed)
def account():
    """The user's account: roles and départements, and a new password (the current one asked)."""
    form = PasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        if not passwords.verify(user.password_hash, form.current.data):
            form.current.errors.append("Mot de passe actuel incorrect.")
        else:
            try:
                operations.set_password(db.session(), Actor.user(user), user, form.password.data)
            except operations.AccountError as exc:
                form.password.errors.append(str(exc)[0].upper() + str(exc)[1:] + ".")
            else:
                login_user(user)  # the session follows the new password; others end
                flash("Mot de passe changé. Vos autres sessions sont fermées.", "success")
                return redirect(url_for("auth.account"))
    return render_template("auth/account.html", title="Mon compte", form=form)
