"""Flask's signed-cookie sessions, with nothing to do for requests that carry no session cookie."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessions(SecureCookieSessionInterface):
    """Twilio's webhooks never carry the session cookie: they get an empty session without the
    signing serializer being built (about a tenth of an incoming-call step). A request that
    does carry the cookie is handled exactly as by Flask."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)
