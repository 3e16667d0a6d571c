"""Flask's request, with url-encoded form bodies parsed in one pass; Flask's per-request check
of its hooks, done once.

Every Twilio webhook is a url-encoded form of about 25 fields, and reading it is the largest
single cost of a webhook after the database: Werkzeug decodes each name and value through
`urllib.parse.parse_qsl` (two function calls per field even when there is nothing to decode).
This request gives the very same form (same pairs, same order, same decoding and error
handling, same size limits) while decoding only what is encoded. Any other body, and every
request in debug mode, is parsed by Werkzeug as usual.
"""

from __future__ import annotations

from itertools import chain
from urllib.parse import unquote

import flask
import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler used below)
from flask import Flask, current_app

URLENCODED = "application/x-www-form-urlencoded"


def parse_urlencoded(text: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a url-encoded body, exactly as Werkzeug's form parser gives
    them (`parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")`)."""
    items = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in field:
            name, value = name.replace("+", " "), value.replace("+", " ")
        if "%" in name:
            name = unquote(name, errors="werkzeug.url_quote")
        if "%" in value:
            value = unquote(value, errors="werkzeug.url_quote")
        items.append((name, value))
    return items


class Request(flask.Request):
    """The app's request class (`app.request_class`)."""

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        limit = self.max_form_memory_size
        if self.mimetype != URLENCODED or (current_app and current_app.debug) or (
                limit is not None and (self.content_length or 0) > limit):
            super()._load_form_data()  # Werkzeug's own, and its 413 for a form too large
            return
        # As Werkzeug: the stream limited to the content length and to max_content_length
        # (413 beyond), decoded as UTF-8; a body that is not is an empty form.
        stream = self._get_stream_for_parsing()
        try:
            items = parse_urlencoded(stream.read().decode())
        except ValueError:
            items = []
        storage = self.parameter_storage_class
        d = self.__dict__
        d["stream"], d["form"], d["files"] = stream, storage(items), storage()


def remember_sync_functions(app: Flask) -> None:
    """Answer once which hooks and views are plain functions.

    For every hook and view it runs, on every request, Flask asks whether the function is a
    coroutine function (`Flask.ensure_sync`, about ten calls into `inspect` each time: eight
    times per webhook). The answer is kept for the functions registered by the time the app is
    created; any other function is asked about as before."""
    registered = chain(app.view_functions.values(), app.teardown_appcontext_funcs,
                       *(funcs for hooks in (app.before_request_funcs, app.after_request_funcs,
                                             app.teardown_request_funcs)
                         for funcs in hooks.values()))
    ensure_sync = app.ensure_sync
    plain = {id(func): func for func in registered if ensure_sync(func) is func}

    def ensure_sync_remembered(func):
        return func if plain.get(id(func)) is func else ensure_sync(func)

    app.ensure_sync = ensure_sync_remembered
