"""Fixtures: every database test runs on SQLite and on a real, throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from datetime import datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import text

from app import create_app
from core import db as core_db
from core.cli import upgrade
from core.db import Base, make_engine
from devtools.clock import Clock
from devtools.pgcluster import Cluster
from directory.operations import load_demo, seed_departements
from ivr.simulator import Emulator, FlaskTransport
from tracking.taxonomy import load_file as load_taxonomy

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_BASE = "https://svi.example.gouv.fr"
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = Cluster(port=int(os.environ.get("SVI_TEST_PG_PORT", "54329"))).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory, request):
    """Schema created once per backend by the real Alembic migrations."""
    urls = {}

    def get(backend: str) -> str:
        if backend not in urls:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'svi.sqlite3'}"
            else:
                url = request.getfixturevalue("pg_cluster").create_database("svi_test")
            upgrade(url)
            urls[backend] = url
        return urls[backend]
    return get


def _reset(engine) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(t.name for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(t.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, database_urls, tmp_path_factory):
    """The app on a freshly reset database (each backend in turn), directory seeded with demo."""
    url = database_urls(request.param)
    engine = make_engine(url)
    _reset(engine)
    engine.dispose()
    clock = Clock()
    application = create_app({"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                              "PUBLIC_BASE_URL": PUBLIC_BASE, "SVI_CALLER_ID": "+33806000156",
                              "SECRET_KEY": "test-secret", "CLOCK": clock,
                              "JOURNAL_DIR": str(tmp_path_factory.mktemp("journal")),
                              "MAIL_OUTBOX_DIR": str(tmp_path_factory.mktemp("outbox"))})
    application.config["TEST_CLOCK"] = clock
    with application.app_context():
        seed_departements(core_db.session())
        load_demo(core_db.session())
        load_taxonomy(core_db.session())
        core_db.commit()
    yield application
    journal = application.extensions.get("svi.journal")
    if journal is not None:  # records journaled by the test: replayed before the next one
        journal.wait_until_empty(timeout=30)
    from tickets import emails
    emails.drain(application)  # the voice path mails in the background: sent before the next test
    core_db.dispose(application)


@pytest.fixture
def clock(app):
    return app.config["TEST_CLOCK"]


@pytest.fixture
def db(app):
    """A session of its own for arranging data (commit it) and asserting records.

    No app context is held open: Flask would reuse it for the requests under test, and they
    would share this session instead of opening their own as in production.
    """
    session = app.extensions["svi.sessionmaker"]()
    yield session
    session.close()


@pytest.fixture
def twilio(app):
    """Twilio's part: signs requests and follows TwiML like Twilio does."""
    return Emulator(FlaskTransport(app), auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)


@pytest.fixture(scope="session")
def recalc(tmp_path_factory):
    """Open a workbook in LibreOffice (headless), recalculate it, and return the values."""
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.fail("LibreOffice is missing: run `bash scripts/system-deps.sh`")
    profile = tmp_path_factory.mktemp("lo-profile")

    def run(path: Path) -> openpyxl.Workbook:
        out = path.parent / "recalculated"
        result = subprocess.run(
            [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless",
             "--convert-to", "xlsx", "--outdir", str(out), str(path)],
            capture_output=True, text=True, timeout=180)
        converted = out / path.name
        assert result.returncode == 0 and converted.exists(), result.stderr
        return openpyxl.load_workbook(converted, data_only=True)
    return run


@pytest.fixture
def admin(app, db):
    """A test client logged in as an admin (admin@example.gouv.fr) through the login form."""
    from accounts.models import Role
    from tests.webclient import login, make_user
    make_user(db, "admin@example.gouv.fr", Role.admin)
    client = app.test_client()
    assert login(client, "admin@example.gouv.fr").status_code == 302
    return client
