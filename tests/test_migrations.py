"""The Alembic migrations build exactly the models' schema, and every one of them can be undone."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.cli import alembic_config, upgrade
from core.db import Base, make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"svi_migrations_{tmp_path.name[-8:].lower()}")


def _differences(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def test_migrations_match_the_models_and_downgrade_to_nothing(empty_database):
    upgrade(empty_database)
    assert _differences(empty_database) == []
    command.downgrade(alembic_config(empty_database), "base")
    upgrade(empty_database)  # and up again from nothing
    assert _differences(empty_database) == []
