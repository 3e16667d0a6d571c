"""Logging in and posting forms the way a browser does (CSRF token read from the page)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from werkzeug.datastructures import MultiDict

from accounts import operations
from accounts.models import Role
from audit.operations import Actor

PASSWORD = "un mot de passe assez long"
_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                    r'name="csrf_token" value="([^"]+)"')


def make_user(db, email: str, role: Role, departements=(), password: str = PASSWORD):
    """Create and commit an account."""
    user = operations.create(db, Actor.cli(), email=email, role=role,
                             departements=departements, password=password)
    db.commit()
    return user


def csrf_token(client, url: str) -> str:
    """The CSRF token of the form on the page at `url`."""
    page = client.get(url).get_data(as_text=True)
    match = _TOKEN.search(page)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


def login(client, email: str, password: str = PASSWORD):
    """Log in through the login form; returns the response."""
    token = csrf_token(client, "/connexion")
    return client.post("/connexion", data={"email": email, "password": password,
                                           "csrf_token": token})


def post_form(client, url: str, data: dict, *, page: str | None = None, **kwargs):
    """Post a form with the CSRF token read from `page` (default: the same URL)."""
    return client.post(url, data={"csrf_token": csrf_token(client, page or url), **data}, **kwargs)


class _FormParser(HTMLParser):
    """Collects what a browser would submit for each form of a page."""

    def __init__(self):
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append([])
        elif not self.forms:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.forms[-1].append((a["name"], a.get("value", "on")))
            elif kind not in ("submit", "file", "button"):
                self.forms[-1].append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select, self._options = a.get("name"), []
        elif tag == "option" and self._select:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            chosen = [v for v, selected in self._options if selected] or [self._options[0][0]]
            self.forms[-1].append((self._select, chosen[0]))
            self._select = None


def form_fields(html: str, index: int = -1) -> MultiDict:
    """The fields of a page's form as a browser would submit them (last form by default)."""
    parser = _FormParser()
    parser.feed(html)
    return MultiDict(parser.forms[index])
