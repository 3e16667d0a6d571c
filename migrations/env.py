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
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
