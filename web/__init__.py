"""The web interface: admins, referents and the national team, in French, on the DSFR.

Each audience has a blueprint; `policy.py` decides who reaches which view; views are thin and
call the same operations as the CLI.
"""

from __future__ import annotations

from datetime import timedelta

from zoneinfo import ZoneInfo

import phonenumbers

from flask import Flask, Response, render_template, request

from web import policy
from web.extensions import csrf, limiter, login_manager

PARIS = ZoneInfo("Europe/Paris")
#: Content-Security-Policy of every page: no inline script or style, nothing from elsewhere.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; media-src 'self'; object-src 'none'; "
       "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    """Bind the extensions, the access policy, the security headers and the blueprints."""
    registered = _hooks(app)
    production = app.config["SVI_ENV"] == "production"
    secure = production or str(app.config["PUBLIC_BASE_URL"]).startswith("https://")
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure, REMEMBER_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="svi_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=app.config["WEB_SESSION_HOURS"]),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_I18N_ENABLED=False,  # WTForms' own translations, French (web/forms.py)
        RATELIMIT_STORAGE_URI=app.config["RATELIMIT_STORAGE_URI"],
        RATELIMIT_HEADERS_ENABLED=False,
    )
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Connectez-vous pour accéder à cette page."
    login_manager.login_message_category = "info"
    limiter.init_app(app)
    policy.init_app(app)
    from accounts import oidc
    oidc.init_app(app)

    from web import admin_pages, auth, dashboard_pages, directory_pages, downloads, home, preview_pages
    for module in (auth, home, directory_pages, admin_pages, preview_pages, downloads,
                   dashboard_pages):
        app.register_blueprint(module.bp)
    from web import email_pages, referent_pages, ticket_pages, token_pages
    for module in (referent_pages, token_pages, ticket_pages, email_pages):
        app.register_blueprint(module.bp)
    from web import account_pages, sso_pages
    for module in (sso_pages, account_pages):
        app.register_blueprint(module.bp)
    import api
    api.init_app(app)
    from ivr.blueprint import bp as ivr_bp
    csrf.exempt(ivr_bp)

    @app.context_processor
    def _navigation():
        return {"navigation": navigation}

    app.jinja_env.filters["phone"] = phone
    app.jinja_env.filters["localtime"] = paris_time
    from web.forms import error_list
    app.jinja_env.globals["error_list"] = error_list

    @app.after_request
    def _security_headers(response):
        if not _is_webhook():
            response.headers.setdefault("Content-Security-Policy", _csp())
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
            if request.endpoint != "static":  # pages and downloads hold personal data
                response.headers["Cache-Control"] = "no-store"
        return response

    for status, title in ((400, "Requête invalide"), (403, "Accès refusé"),
                          (404, "Page introuvable"), (405, "Méthode non autorisée"),
                          (413, "Fichier trop volumineux"), (429, "Trop de tentatives"),
                          (500, "Erreur du service")):
        app.register_error_handler(status, _error_page(status, title))
    _skipped_by_webhooks(app, registered)


def phone(number: str) -> str:
    """An E.164 number as people read it: "+33 1 99 00 93 01"."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(number, None),
                                          phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return number


def paris_time(at) -> str:
    """A stored (UTC) instant as people in metropolitan France read it: "03/12/2026 14:05"."""
    return at.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def navigation() -> list[tuple[str, object]]:
    """The main menu of the current user: only what their role may open. An entry is
    (endpoint, label), or (label, [(endpoint, label)…]) for a sub-menu."""
    from flask_login import current_user
    from accounts import permissions
    from accounts.models import Role
    if not permissions.is_active(current_user):  # an account waiting for a role: no menu
        return []
    items = [("referent_pages.index", "Mes appels"),
             ("ticket_pages.index", "Tickets"),
             ("directory_pages.overview", "Annuaire"),
             ("preview_pages.preview", "Ce qu'entendront les appelants"),
             ("preview_pages.simulator", "Simulateur d'appel"),
             ("downloads.index", "Classeurs")]
    if permissions.sees_every_departement(current_user):
        items.append(("dashboard_pages.national", "Tableau de bord"))
    elif permissions.has_role(current_user, Role.referent) and current_user.departement_codes:
        # A referent: their département's dashboard, or the list of theirs when they have several.
        items.append(("dashboard_pages.mine", "Tableau de bord"))
    if permissions.sees_every_departement(current_user):
        items.insert(2, ("ticket_pages.incident_list", "Incidents"))
    if permissions.may_administer(current_user):
        items.append(("Administration", [
            ("admin_pages.import_directory", "Import et export de l'annuaire"),
            ("admin_pages.worked_holidays", "Jours fériés travaillés"),
            ("admin_pages.prompt_list", "Messages"),
            ("email_pages.index", "Courriels"),
            ("account_pages.index", "Comptes"),
            ("admin_pages.audit_log", "Journal des modifications")]))
    return items


def _csp() -> str:
    """The CSP; with single sign-on, the login and logout forms may lead to the provider."""
    from flask import current_app
    from accounts import oidc
    origins = oidc.provider_origins(current_app)
    return CSP.replace("form-action 'self'", " ".join(["form-action 'self'", *origins])) \
        if origins else CSP


def _is_webhook() -> bool:
    """A request for Twilio's part of the service (the ivr blueprint's prefix), matched to a
    route or not."""
    return request.path.startswith("/ivr/")


_HOOK_LISTS = ("before_request_funcs", "after_request_funcs", "teardown_request_funcs")


def _hooks(app: Flask) -> dict[str, list]:
    """The app-wide request hooks registered so far, by phase."""
    return {name: list(getattr(app, name).get(None, ())) for name in _HOOK_LISTS}


def _skipped_by_webhooks(app: Flask, registered: dict[str, list]) -> None:
    """Group the app-wide hooks `init_app` added (its own and its extensions': CSRF, rate
    limits, login, access rules, API body check, security headers) into one hook per phase,
    which Twilio's webhooks skip.

    None of them has anything to do for a webhook (its blueprint is exempt from each, or they
    only touch pages and their cookies), yet together they cost several times the webhook's own
    signature check: the incoming-call step is one of the service's speed targets. Hooks of the
    app's core (database edge, access log and metrics) are left as they are and still run."""
    for name in _HOOK_LISTS:
        funcs = getattr(app, name).get(None, [])
        known = {id(f) for f in registered[name]}
        added = [f for f in funcs if id(f) not in known]
        if not added:
            continue
        where = funcs.index(added[0])
        funcs[:] = [f for f in funcs if id(f) in known]
        funcs.insert(where, _group(name, [app.ensure_sync(f) for f in added]))


def _group(phase: str, funcs: list):
    """One hook running `funcs` as Flask would (before: in order, until one answers; after and
    teardown: in reverse order), except for a webhook."""
    if phase == "before_request_funcs":
        def web_before_request():
            if not _is_webhook():
                for func in funcs:
                    answer = func()
                    if answer is not None:
                        return answer
            return None
        return web_before_request
    ordered = funcs[::-1]
    if phase == "after_request_funcs":
        def web_after_request(response):
            if not _is_webhook():
                for func in ordered:
                    response = func(response)
            return response
        return web_after_request

    def web_teardown_request(exc):
        if not _is_webhook():
            for func in ordered:
                func(exc)
    return web_teardown_request


def _error_page(status: int, title: str):
    def handler(error):
        from api import is_api_request, problem
        if is_api_request():  # API clients get problem+json, never a page meant for people
            return problem(error)
        if _is_webhook():  # Twilio gets a bare status, never a page meant for people
            return Response(status=status)
        description = getattr(error, "description", "") or ""
        return render_template("errors/error.html", status=status, title=title,
                               description=description), status
    return handler
