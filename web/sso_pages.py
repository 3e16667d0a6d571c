"""Single sign-on pages: « S'identifier avec ProConnect », the return from the provider, the page
of an account waiting for a role, and the return from the provider's logout. The protocol and
the account rules are in accounts/oidc.py."""

from __future__ import annotations

import hmac
import logging
import time

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user, login_user
from sqlalchemy.exc import IntegrityError

from accounts import oidc, permissions
from core import db
from web import policy
from web.auth import _safe_next

bp = Blueprint("sso", __name__)
log = logging.getLogger(__name__)

#: Session keys: where to go after login, the id_token (for the logout), the logout's state.
NEXT, ID_TOKEN, LOGOUT_STATE = "sso_next", "sso_id_token", "sso_logout_state"


def any_account(user, args) -> bool:
    """Any enabled account, with or without a role (the waiting page)."""
    return user is not None and bool(getattr(user, "active", False))


def _public_url(endpoint: str) -> str:
    """An absolute URL of this service, as registered with the provider."""
    base = current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")
    return base + url_for(endpoint)


def _error_page(error: oidc.SsoError):
    status = {"unreachable": 503, "disabled": 403, "other-identity": 403,
              "unverified": 403}.get(error.reason, 400)
    return render_template("auth/sso_error.html", title="Connexion impossible",
                           message=error.message, provider=oidc.provider_name(current_app)), status


@bp.post("/connexion/sso")
@policy.allow(policy.public)
def start():
    """Send the person to the provider (a form with its CSRF token, from the login page)."""
    if not oidc.enabled(current_app):
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    target = _safe_next(request.args.get("next"))
    if target:
        session[NEXT] = target
    else:
        session.pop(NEXT, None)
    try:
        return oidc.authorize_redirect(current_app, _public_url("sso.callback"))
    except oidc.SsoError as exc:
        return _error_page(exc)


@bp.get("/connexion/sso/retour")
@policy.allow(policy.public)
def callback():
    """The provider sends the person back here: check everything, open the account's session."""
    if not oidc.enabled(current_app):
        abort(404)
    name = oidc.provider_name(current_app)
    try:
        identity, id_token = oidc.finish(current_app)
        try:
            user, outcome = oidc.resolve(db.session(), identity, name)
        except IntegrityError:  # the same person's first login twice at once: the other won
            db.rollback()
            user, outcome = oidc.resolve(db.session(), identity, name)
    except oidc.SsoError as exc:
        db.rollback()
        log.info("connexion %s refusée (%s)", name, exc.reason)
        return _error_page(exc)
    except Exception:  # never a bare 500 on the way back from the provider
        db.rollback()
        log.exception("connexion %s : erreur inattendue", name)
        return _error_page(oidc.SsoError(
            "unexpected",
            f"La connexion avec {name} n'a pas pu aboutir. Réessayez dans un instant."))
    target = session.get(NEXT)
    session.clear()  # nothing of the anonymous session survives the login (fixation)
    session.permanent = True
    session[policy.LOGIN_AT] = time.time()
    login_user(user)
    session[ID_TOKEN] = id_token
    log.info("connexion %s : compte %s (%s)", name, user.id, outcome)
    if user.role is None:
        return redirect(url_for("sso.waiting"))
    return redirect(target or url_for("home.index"))


@bp.get("/connexion/en-attente")
@policy.allow(any_account)
def waiting():
    """What an account without a role sees, and nothing else, until an admin grants one."""
    if permissions.is_active(current_user):
        return redirect(url_for("home.index"))
    return render_template("auth/waiting.html", title="Compte en attente d'un rôle",
                           provider=oidc.provider_name(current_app)
                           if current_user.oidc_subject else None)


def provider_logout(id_token: str | None):
    """After the local logout: the redirect to the provider's end_session endpoint (so that its
    session ends too), or None when there is nothing to end there."""
    if not id_token or not oidc.enabled(current_app):
        return None
    found = oidc.end_session_url(current_app, id_token, _public_url("sso.logged_out"))
    if found is None:
        return None
    url, state = found
    session[LOGOUT_STATE] = state
    return redirect(url)


@bp.get("/deconnexion/sso/retour")
@policy.allow(policy.public)
def logged_out():
    """The provider sends the person back after its own logout."""
    expected = session.pop(LOGOUT_STATE, None)
    given = request.args.get("state", "")
    if expected and hmac.compare_digest(expected, given):
        flash(f"Vous êtes déconnecté, de ce service et de {oidc.provider_name(current_app)}.",
              "success")
    return redirect(url_for("auth.login"))
