"""Authorization in one place: each view declares who may reach it; a check before every request
applies it, and a view without a rule is refused (the URL-map test lists them all).

Rules are plain predicates of (user, view arguments), built on accounts.permissions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, logout_user

from accounts import permissions, tokens
from core import db

Rule = Callable[[object, dict], bool]

#: Endpoints outside this policy: they authenticate in their own way (Twilio signature) or
#: serve public files.
EXEMPT_BLUEPRINTS = {"ivr"}
EXEMPT_ENDPOINTS = {"static", "healthz", "readyz", "metrics", "prompt_audio"}


def public(user, args) -> bool:
    """Anyone, logged in or not (login page, password reset)."""
    return True


def logged_in(user, args) -> bool:
    """Any active account."""
    return permissions.is_active(user)


def admin(user, args) -> bool:
    """Admins only."""
    return permissions.may_administer(user)


def every_departement(user, args) -> bool:
    """Admins and the national team."""
    return permissions.sees_every_departement(user)


def reads_departement(user, args) -> bool:
    """Whoever may read the département named by the URL's `code`."""
    return permissions.may_read_departement(user, str(args.get("code", "")).upper())


def edits_departement(user, args) -> bool:
    """Whoever may edit the département named by the URL's `code`."""
    return permissions.may_edit_departement(user, str(args.get("code", "")).upper())


#: When the session's user logged in (a session ends a fixed time after, however active).
LOGIN_AT = "login_at"


def session_expired() -> bool:
    """True when the logged-in session is older than WEB_SESSION_HOURS (or has no login time)."""
    started = session.get(LOGIN_AT)
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    return not isinstance(started, (int, float)) or time.time() - started > lifetime


def allow(rule: Rule):
    """Declare the rule of a view: `@allow(policy.admin)`."""
    def mark(view):
        view.svi_policy = rule
        return view
    return mark


def rule_of(app: Flask, endpoint: str) -> Rule | None:
    """The rule a view declared, or None."""
    view = app.view_functions.get(endpoint)
    return getattr(view, "svi_policy", None)


def is_exempt(endpoint: str) -> bool:
    """Endpoints checked otherwise (webhooks) or public by nature (static files)."""
    return endpoint in EXEMPT_ENDPOINTS or endpoint.split(".")[0] in EXEMPT_BLUEPRINTS


#: Blueprints of the JSON API: their user is the owner of the request's bearer token, never a
#: session cookie (so that no page of another site can act through a logged-in browser).
API_BLUEPRINT_PREFIX = "api_"


def is_api(endpoint: str) -> bool:
    """An endpoint of the JSON API (api/)."""
    return endpoint.startswith(API_BLUEPRINT_PREFIX)


def token_user():
    """The active owner of the request's `Authorization: Bearer` token, or None."""
    if "svi_token_user" not in g:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        found = tokens.owner(db.session(), secret.strip()) if scheme.lower() == "bearer" else None
        g.svi_token_user = found[0] if found else None
        if found:
            try:
                tokens.touch(current_app.extensions["svi.sessionmaker"], found[1])
            except Exception:  # a busy database must not refuse the request for a statistic
                current_app.logger.warning("dernier usage du jeton non enregistré", exc_info=True)
    return g.svi_token_user


def acting_user():
    """Who makes the request: the token's owner on the API, the logged-in user elsewhere."""
    if request.endpoint and is_api(request.endpoint):
        return token_user()
    return current_user if current_user.is_authenticated else None


def init_app(app: Flask) -> None:
    """Check every request against its view's rule before the view runs."""

    @app.before_request
    def _enforce():
        endpoint = request.endpoint
        if endpoint is None or is_exempt(endpoint):
            return None
        rule = rule_of(current_app, endpoint)
        if rule is None:  # a view nobody declared a rule for is never served
            current_app.logger.error("vue sans règle d'accès : %s", endpoint)
            abort(403)
        if is_api(endpoint):
            user = token_user()
            if rule(user, request.view_args or {}):
                return None
            abort(401 if user is None else 403)
        if current_user.is_authenticated and session_expired():
            logout_user()
            session.clear()
            flash("Votre session a expiré : reconnectez-vous.", "info")
        user = current_user if current_user.is_authenticated else None
        if rule(user, request.view_args or {}):
            return None
        if user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if permissions.awaits_role(user):  # single sign-on, no role granted yet: nothing else
            return redirect(url_for("sso.waiting"))
        abort(403)
