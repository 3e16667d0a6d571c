"""Alembic environment: the database URL comes from the app's settings."""

from __future__ import annotations

from alembic import context

from core.db import Base
import directory.models  # noqa: F401  (registers tables)
import tracking.models  # noqa: F401
import scheduler.models  # noqa: F401
import accounts.models  # noqa: F401
import audit.models  # noqa: F401
import prompts.models  # noqa: F401
import tickets.models  # noqa: F401

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        from core.db import make_engine
        connectable = make_engine(config.get_main_option("sqlalchemy.url"))
        with connectable.connect() as connection:
            _run(connection)
        connectable.dispose()
    else:
        _run(connectable)


def _run(connection) -> None:
    # SQLite rebuilds a table to alter a column (batch mode): with foreign keys on, dropping the
    # old table would cascade to the rows referencing it. They are off during the migrations
    # (the pragma only takes effect outside a transaction), checked, then on again.
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # ends SQLAlchemy's autobegun transaction: Alembic opens its own
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if broken:
            raise RuntimeError(f"clés étrangères rompues après migration : {broken[:5]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
