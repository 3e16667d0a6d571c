"""Flask's signed-cookie sessions, with nothing to do for requests that carry no session cookie
and never use the session."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessions(SecureCookieSessionInterface):
    """Twilio's webhooks never carry the session cookie: they get an empty session without the
    signing serializer being built (about a tenth of an incoming-call step). A request that
    does carry the cookie is handled exactly as by Flask."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and ("HTTP_COOKIE" not in request.environ
                               or self.get_cookie_name(app) not in request.cookies):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        # A session nobody read nor changed, and empty, has nothing to write (Flask would add
        # nothing either): the webhooks' case, without Flask's seven cookie settings per request.
        if not session and not session.accessed and not session.modified:
            return
        super().save_session(app, session, response)
