"""A live SVI server on 127.0.0.1 and a headless Chromium: shared by browser tests and screenshots.

The server runs the real app on a fresh SQLite file (migrated, seeded with the départements, the
demo lines and the taxonomy) in a background thread, on a free port, with a settable clock fixed
at a Monday 10:00 in Paris so that pages are deterministic. Chromium is Debian's
(`/usr/bin/chromium`, see scripts/system-deps.sh): Playwright's own browser download is never used.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

from werkzeug.serving import make_server

from accounts import operations as accounts
from accounts.models import Role
from app import create_app
from audit.operations import Actor
from core import db as core_db
from core.cli import upgrade
from directory.operations import load_demo, seed_departements
from devtools.clock import Clock
from tracking.taxonomy import load_file as load_taxonomy

HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
LOCALE = "fr-FR"
VIEWPORT = {"width": 1280, "height": 900}
PASSWORD = "un mot de passe assez long"
#: Webhook signing key of the local server (the simulator signs with it, as Twilio would).
AUTH_TOKEN = "live-server-auth-token"

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request


def _config(url: str, workdir: Path, base_url: str, clock) -> dict:
    return {"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": base_url,
            "SVI_CALLER_ID": "+33806000156", "SECRET_KEY": secrets.token_hex(16),
            "SVI_ALLOW_SIMULATED_TIME": True, "CLOCK": clock,
            "JOURNAL_DIR": str(workdir / "journal"), "MAIL_OUTBOX_DIR": str(workdir / "outbox"),
            "WORKBOOK_STORAGE_DIR": str(workdir / "workbooks")}


def prepare_database(path: Path) -> None:
    """Create a SQLite database at `path`: migrated, départements, demo lines and taxonomy."""
    url = f"sqlite:///{path}"
    upgrade(url)
    app = create_app(_config(url, path.parent, "", Clock()))
    try:
        with app.app_context():
            seed_departements(core_db.session())
            load_demo(core_db.session())
            load_taxonomy(core_db.session())
            core_db.commit()
    finally:
        core_db.dispose(app)


class LiveServer:
    """The app served over HTTP in a thread: `url`, `app`, `clock`, `user(...)`, `stop()`."""

    def __init__(self, workdir: Path | None = None, template: Path | None = None,
                 config: dict | None = None):
        self._owned = workdir is None  # a temporary folder of our own, removed by stop()
        self.workdir = workdir = workdir or Path(tempfile.mkdtemp(prefix="svi-live-"))
        database = workdir / "svi.sqlite3"
        if template is None:
            prepare_database(database)
        else:
            shutil.copyfile(template, database)
        self.clock = Clock()
        # Bound first (port 0: the system picks a free one) so the app knows its own base URL.
        self._server = make_server(HOST, 0, None, threaded=True)
        self.url = f"http://{HOST}:{self._server.server_port}"
        self.app = create_app({**_config(f"sqlite:///{database}", workdir, self.url, self.clock),
                               **(config or {})})  # e.g. single sign-on's OIDC_* settings
        self.app.config["TEST_CLOCK"] = self.clock
        self.app.instance_path = str(workdir / "instance")  # uploads land here, not in the repo
        self._server.app = self.app
        self._thread = threading.Thread(target=self._server.serve_forever, name="svi-live-server",
                                        daemon=True)
        self._thread.start()

    def user(self, email: str, role: Role | str, departements=(), password: str = PASSWORD,
             name: str = ""):
        """Create and commit an account; `role` is a Role or its name ("admin", "referent"…)."""
        role = role if isinstance(role, Role) else Role[role]
        with self.app.app_context():
            user = accounts.create(core_db.session(), Actor.cli(), email=email, role=role,
                                   name=name, departements=list(departements), password=password)
            core_db.commit()
            return user.id

    def stop(self) -> None:
        """Stop serving, let the journal drain, and close the database connections."""
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()
        journal = self.app.extensions.get("svi.journal")
        if journal is not None:
            journal.wait_until_empty(timeout=30)
        core_db.dispose(self.app)
        if self._owned:
            shutil.rmtree(self.workdir, ignore_errors=True)


def launch_browser(playwright):
    """Debian's headless Chromium through Playwright (never Playwright's own download)."""
    # On Linux the browser's own words (file and date inputs) follow LANGUAGE, not --lang;
    # they are French only with Debian's chromium-l10n installed.
    env = {**os.environ, "LANGUAGE": "fr", "LANG": "fr_FR.UTF-8"}
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                      env=env)


def new_page(browser, base_url: str):
    """A new context and page (fr-FR, 1280×900, `base_url`); console errors in `page.console_errors`."""
    context = browser.new_context(base_url=base_url, locale=LOCALE, viewport=VIEWPORT)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: page.console_errors.append(msg.text)
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.console_errors.append(f"uncaught: {exc}"))
    return page


def login(page, email: str, password: str = PASSWORD) -> None:
    """Log in through the login form, as a person would."""
    page.goto("/connexion")
    page.get_by_label("Adresse électronique").fill(email)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_load_state()
