"""Health probes: /healthz (the process answers) and /readyz (the database answers and its schema
is at the code's migration head), on SQLite and PostgreSQL; a database behind head, without a
schema, newer than the code, unreachable (closed port, missing file, stopped cluster)."""

from __future__ import annotations

import socket
import uuid

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app import create_app
from core import db as core_db
from core.cli import alembic_config, upgrade
from core.db import make_engine
from devtools.pgcluster import Cluster, _bin
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE


def _app(url: str, tmp_path):
    return create_app({"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                       "PUBLIC_BASE_URL": PUBLIC_BASE, "SECRET_KEY": "test-secret",
                       "JOURNAL_DIR": str(tmp_path / "journal")})


def _head_and_previous(url: str) -> tuple[str, str]:
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_revision(script.get_current_head())
    return head.revision, head.down_revision


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path):
    """The URL of a new, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    return request.getfixturevalue("pg_cluster").create_database(f"ready_{uuid.uuid4().hex[:12]}")


def _ready(app):
    response = app.test_client().get("/readyz")
    return response.status_code, response.get_json(), response


def test_liveness_and_readiness_answer_without_login_cookie_or_rate_limit(app):
    client = app.test_client()
    for _ in range(60):  # a load balancer checks often: never throttled, never redirected
        for path in ("/healthz", "/readyz"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.get_data(as_text=True))
            assert response.is_json and "Set-Cookie" not in response.headers
    head, _ = _head_and_previous(app.config["DATABASE_URL"])
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok", "schema": head}


def test_readiness_refuses_a_database_behind_head_and_accepts_it_once_upgraded(fresh_url, tmp_path):
    head, previous = _head_and_previous(fresh_url)
    upgrade(fresh_url, previous)
    app = _app(fresh_url, tmp_path)
    try:
        status, body, _ = _ready(app)
        assert status == 503 and body["status"] == "unavailable"
        assert body["reason"] == (f"migrations en retard : base à {previous}, code à {head} "
                                  "(flask --app app db upgrade)")
        assert app.test_client().get("/healthz").status_code == 200  # alive all the same
        upgrade(fresh_url)
        assert _ready(app)[:2] == (200, {"status": "ok", "schema": head})
    finally:
        core_db.dispose(app)


def test_readiness_refuses_a_database_never_migrated(fresh_url, tmp_path):
    app = _app(fresh_url, tmp_path)
    try:
        status, body, _ = _ready(app)
        assert status == 503
        assert body["reason"].startswith("schéma absent : migrations jamais appliquées")
    finally:
        core_db.dispose(app)


def test_readiness_accepts_a_schema_newer_than_the_code_during_a_rolling_upgrade(fresh_url, tmp_path):
    """The next release's migrations ran first: this instance keeps serving until restarted."""
    upgrade(fresh_url)
    engine = make_engine(fresh_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    app = _app(fresh_url, tmp_path)
    try:
        status, body, _ = _ready(app)
        assert status == 200 and body["schema"] == "9999"
        assert body["note"] == "schéma plus récent que ce code (mise à jour en cours ?)"
    finally:
        core_db.dispose(app)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the socket is: nothing listens there


@pytest.mark.parametrize("url", [
    pytest.param(lambda tmp: f"postgresql+psycopg://svi@127.0.0.1:{_closed_port()}/svi",
                 id="postgresql-closed-port"),
    pytest.param(lambda tmp: f"sqlite:///{tmp / 'no-such-folder' / 'svi.sqlite3'}",
                 id="sqlite-missing-folder"),
])
def test_readiness_says_the_database_is_unreachable(url, tmp_path):
    app = _app(url(tmp_path), tmp_path)
    try:
        status, body, response = _ready(app)
        assert (status, body) == (503, {"status": "unavailable",
                                        "reason": "base de données injoignable"})
        assert "Set-Cookie" not in response.headers
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        core_db.dispose(app)


def test_readiness_follows_a_postgresql_server_that_stops(tmp_path):
    cluster = Cluster(port=_closed_port()).start()  # a cluster of its own: this test stops it
    try:
        url = cluster.create_database("svi_ready")
        upgrade(url)
        app = _app(url, tmp_path)
        try:
            assert _ready(app)[0] == 200
            cluster._run(_bin("pg_ctl"), "-D", str(cluster.data), "-m", "fast", "-w", "stop")
            status, body, _ = _ready(app)
            assert (status, body["reason"]) == (503, "base de données injoignable")
        finally:
            core_db.dispose(app)
    finally:
        cluster.stop()
