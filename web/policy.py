"""Authorization in one place: each view declares who may reach it; a check before every request
applies it, and a view without a rule is refused (the URL-map test lists them all).

Rules are plain predicates of (user, view arguments), built on accounts.permissions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, abort, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, logout_user

from accounts import permissions

Rule = Callable[[object, dict], bool]

#: Endpoints outside this policy: they authenticate in their own way (Twilio signature) or
#: serve public files.
EXEMPT_BLUEPRINTS = {"ivr"}
EXEMPT_ENDPOINTS = {"static", "healthz", "prompt_audio"}


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
        if current_user.is_authenticated and session_expired():
            logout_user()
            session.clear()
            flash("Votre session a expiré : reconnectez-vous.", "info")
        user = current_user if current_user.is_authenticated else None
        if rule(user, request.view_args or {}):
            return None
        if user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)
