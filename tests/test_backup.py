"""deploy/backup.sh and deploy/restore.sh: a throwaway PostgreSQL database (and a SQLite file)
with calls in it is backed up while open, restored into another, and both hold the same rows;
a restore never overwrites a database that is not empty unless told to; old backups are pruned."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app import create_app
from core import db as core_db
from core.cli import upgrade
from core.db import Base, make_engine
from devtools.clock import Clock
from directory.operations import load_demo, seed_departements
from ivr.simulator import Emulator, FlaskTransport, Referent
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tracking.models import Call
from tracking.taxonomy import load_file as load_taxonomy

ROOT = Path(__file__).resolve().parent.parent


def _fill(url: str, tmp_path: Path) -> str:
    """Migrate and seed a database, place one answered call; its CallSid."""
    upgrade(url)
    app = create_app({"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "CLOCK": Clock(),
                      "PUBLIC_BASE_URL": PUBLIC_BASE, "SECRET_KEY": "backup-secret",
                      "JOURNAL_DIR": str(tmp_path / "journal"),
                      "MAIL_OUTBOX_DIR": str(tmp_path / "outbox")})
    try:
        with app.app_context():
            seed_departements(core_db.session())
            load_demo(core_db.session())
            load_taxonomy(core_db.session())
            core_db.commit()
        t = Emulator(FlaskTransport(app), auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE).call(
            caller="+33612345678", keys=["75", "1", "2"], referents=[Referent("accept")])
        assert t.dialled
        return t.call_sid
    finally:
        core_db.dispose(app)


def _contents(url: str) -> dict:
    """Row count of every table, the schema version and the calls."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            counts = {t.name: conn.scalar(select(func.count()).select_from(t))
                      for t in Base.metadata.sorted_tables}
            version = conn.scalar(text("SELECT version_num FROM alembic_version"))
            calls = conn.execute(select(Call.call_sid, Call.outcome, Call.departement_code,
                                        Call.caller_hash)).all()
        return {"counts": counts, "version": version, "calls": sorted(calls)}
    finally:
        engine.dispose()


def _run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BACKUP_DIR")}
    return subprocess.run(["bash", str(ROOT / "deploy" / script), *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.fixture(params=["postgresql", "sqlite"])
def databases(request, tmp_path):
    """(source URL, empty target URL, other empty target URL) of one backend."""
    if request.param == "sqlite":
        return tuple(f"sqlite:///{tmp_path / name}" for name in ("src.sqlite3", "dst.sqlite3",
                                                                 "other.sqlite3"))
    cluster = request.getfixturevalue("pg_cluster")
    suffix = os.urandom(4).hex()
    return tuple(cluster.create_database(f"{name}_{suffix}") for name in ("src", "dst", "other"))


def test_a_backup_restored_into_an_empty_database_holds_the_same_rows(databases, tmp_path):
    source, target, other = databases
    sid = _fill(source, tmp_path)
    made = _run("backup.sh", str(tmp_path / "backups"), DATABASE_URL=source)
    assert made.returncode == 0, made.stderr
    backup = Path(made.stdout.strip())
    assert backup.parent == tmp_path / "backups" and backup.stat().st_size > 0
    assert backup.suffix == (".sqlite3" if source.startswith("sqlite") else ".dump")
    assert oct(backup.stat().st_mode & 0o777) == "0o600"  # personal data: the owner only

    restored = _run("restore.sh", str(backup), target)
    assert restored.returncode == 0, restored.stderr
    assert "flask --app app db upgrade" in restored.stdout
    expected = _contents(source)
    assert expected["counts"]["calls"] == 1 and expected["calls"][0][0] == sid
    assert expected["counts"]["departements"] == 101
    assert _contents(target) == expected

    # A database that is not empty is never overwritten unless asked (--clean).
    again = _run("restore.sh", str(backup), target)
    assert again.returncode != 0 and "--clean" in again.stderr
    _fill(other, tmp_path)  # another call there: --clean brings back the backup's rows exactly
    assert _contents(other) != expected
    clean = _run("restore.sh", "--clean", str(backup), other)
    assert clean.returncode == 0, clean.stderr
    assert _contents(other) == expected


def test_a_backup_of_the_wrong_kind_is_refused(databases, tmp_path):
    source, target, _ = databases
    wrong = tmp_path / ("svi.dump" if source.startswith("sqlite") else "svi.sqlite3")
    wrong.write_bytes(b"not a backup")
    refused = _run("restore.sh", str(wrong), target)
    assert refused.returncode != 0 and "incompatibles" in refused.stderr


def test_old_backups_are_pruned(tmp_path):
    url = f"sqlite:///{tmp_path / 'svi.sqlite3'}"
    upgrade(url)
    folder = tmp_path / "backups"
    made = [_run("backup.sh", str(folder), DATABASE_URL=url, BACKUP_KEEP="2").stdout.strip()
            for _ in range(3)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(p).name for p in made[1:])
