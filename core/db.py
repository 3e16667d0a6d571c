"""Database wiring: declarative base, one engine per app, one session per request/command.

Domain operations only `flush()`; each edge commits or rolls back, once, at one place:
- web pages and API calls: the `after_request` hook below commits when the response is not an
  error (status < 400) and rolls back otherwise; views never commit;
- Twilio webhooks: `ivr.service.deliver` writes each tracking record in `write_transaction()`
  (or on the hot connection, or in the journal); their request session only reads;
- CLI commands: `with transaction() as session:`;
- jobs: `scheduler.jobs.run_job`, which commits the work with the run's outcome.
A side effect that must only happen once the change is committed (an email…) is registered
with `after_commit(callback)`: `commit()` runs it after committing, `rollback()` drops it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from flask import Flask, current_app, g
from sqlalchemy import exc as sa_exc
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

#: What "the database cannot take it now" looks like: locked, unreachable, timed out; wrapped by
#: SQLAlchemy or raised by the driver itself (a raw connection's checkout is not wrapped).
DB_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                  sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError,
                  TimeoutError, ConnectionError)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model; constraint names are stable so migrations stay portable."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store timezone-aware UTC values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        process_bind_param = self.process_bind_param

        def process(value):
            # The text SQLAlchemy's SQLite DATETIME writes ("2026-12-21 09:00:00.000000"), from
            # one C call instead of a format of seven fields: a new call writes four instants.
            value = process_bind_param(value, dialect)
            return None if value is None else value.isoformat(" ", "microseconds")
        return process

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Current instant, timezone-aware UTC."""
    return datetime.now(UTC)


#: Longest wait for a lock, in seconds, for commands, jobs and web pages (not the voice path).
LOCK_WAIT = 15
#: Longest wait for a lock or a statement on the voice path: Twilio waits 15 s in all for an
#: answer, and a webhook may run two or three statements; past it, the write is journaled.
VOICE_LOCK_WAIT = 1.5


def make_engine(url: str, *, lock_wait: float = LOCK_WAIT) -> Engine:
    """Create the engine; SQLite gets foreign keys, WAL and a busy timeout, PostgreSQL a lock
    timeout, both `lock_wait` seconds."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": lock_wait})
        voice = lock_wait < LOCK_WAIT

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            if voice:  # transactions begun by SQLAlchemy (below), not by the driver
                dbapi_conn.isolation_level = None

        if voice:
            @event.listens_for(engine, "begin")
            def _begin(conn):
                # A write transaction takes the write lock first, waiting `lock_wait` for it:
                # a deferred one that read first could fail at once on its first write.
                immediate = conn.get_execution_options().get("sqlite_immediate")
                conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    options = {}
    if lock_wait < LOCK_WAIT:  # the voice path: no statement may hold a webhook for long
        ms = int(lock_wait * 1000)
        options = {"connect_args": {"connect_timeout": 1,  # seconds: the voice path cannot wait
                                    "options": f"-c lock_timeout={ms} -c statement_timeout={2 * ms}"}}
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, **options)


def init_app(app: Flask) -> None:
    """Attach the engines and session factories to the app; close the session after each request.

    The voice path (Twilio webhooks) has an engine of its own whose lock waits are short, so that
    a long import or a backup never holds a caller past Twilio's deadline.
    """
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["svi.engine"] = engine
    app.extensions["svi.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    voice = make_engine(app.config["DATABASE_URL"], lock_wait=VOICE_LOCK_WAIT)
    app.extensions["svi.voice_engine"] = voice
    app.extensions["svi.voice_sessionmaker"] = sessionmaker(voice, expire_on_commit=False)
    app.extensions["svi.hot_connections"] = threading.local()

    @app.after_request
    def _commit_request(response):
        # The one commit of a web request. Webhooks have their own edge (`write_transaction`):
        # a failed commit here would turn their TwiML into an HTML error.
        if not g.get("db_voice"):
            if response.status_code < 400:
                commit()
            else:
                rollback()
        return response

    @app.teardown_appcontext
    def _close_session(exc):
        g.pop("db_after_commit", None)
        session = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()


def session() -> Session:
    """The session of the current request or command (created on first use)."""
    if "db_session" not in g:
        maker = "svi.voice_sessionmaker" if g.get("db_voice") else "svi.sessionmaker"
        g.db_session = current_app.extensions[maker]()
    return g.db_session


@contextmanager
def write_transaction():
    """A webhook's tracking write: a session of its own on the voice engine, committed on exit.

    The request's reads end first (their snapshot would hold SQLite back); on SQLite the write
    transaction waits for the write lock from the start (at most VOICE_LOCK_WAIT). On error both
    are rolled back and the error is raised.
    """
    with current_app.extensions["svi.voice_sessionmaker"]() as voice:
        try:
            commit()
            voice.connection(execution_options={"sqlite_immediate": True})
            yield voice
            voice.commit()
        except BaseException:
            voice.rollback()
            rollback()
            raise


def use_voice_engine() -> None:
    """This request is a Twilio webhook: its session waits for locks only briefly."""
    g.db_voice = True


def after_commit(callback: Callable[[], object]) -> None:
    """Run `callback()` once the current edge's transaction has committed; dropped on rollback."""
    g.setdefault("db_after_commit", []).append(callback)


def commit() -> list[Exception]:
    """Commit the current session (if one was opened), then run the after-commit callbacks.

    Called only at the edges. A failing callback is logged and never undoes the commit: the
    failures are returned, for an edge that reports them (a job marks its run failed).
    """
    s = g.get("db_session")
    if s is not None:
        s.commit()
    failures = []
    while callbacks := g.pop("db_after_commit", None):
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                log.exception("after-commit action failed: %r", callback)
                failures.append(exc)
    return failures


def rollback() -> None:
    """Roll back the current session (if one was opened) and drop the after-commit callbacks."""
    g.pop("db_after_commit", None)
    s = g.get("db_session")
    if s is not None:
        s.rollback()


class RawStatement:
    """A Core statement compiled once per dialect and run straight on a DBAPI cursor.

    Only for the few statements every incoming call runs, where SQLAlchemy's per-execution
    machinery costs several times what the database does. The SQL, the parameter style and the
    bind processors (UTC datetimes, JSON) all come from SQLAlchemy, as for any other statement.
    """

    def __init__(self, statement):
        """`statement`: a Core statement, or a function of the dialect name that returns one."""
        self.statement = statement
        self._compiled: dict[str, tuple] = {}

    def _compile(self, dialect) -> tuple:
        statement = self.statement
        if not isinstance(statement, ClauseElement):
            statement = statement(dialect.name)
        compiled = statement.compile(dialect=dialect)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("RawStatement applies no Python-side column default: give every value")
        processors, defaults = {}, {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
            if not bind.required:  # a literal of the statement, e.g. LIMIT 1
                defaults[name] = bind.effective_value
        # Positional parameter style (SQLite): each parameter in order, with its processor.
        order = compiled.positiontup
        plan = [(name, processors.get(name)) for name in order] if order else None
        prepared = (compiled.string, plan, processors, defaults)
        self._compiled[dialect.name] = prepared
        return prepared

    def execute(self, connection: "RawConnection", params: dict):
        """Run with named `params` (names it does not use are ignored); returns the cursor,
        the connection's own (see `RawConnection`)."""
        sql, plan, processors, defaults = (self._compiled.get(connection.dialect.name)
                                           or self._compile(connection.dialect))
        if defaults:
            params = {**defaults, **params}
        if plan is not None:
            args = [params[name] if processor is None else processor(params[name])
                    for name, processor in plan]
        else:
            args = {**params}
            for name, processor in processors.items():
                if name in args:
                    args[name] = processor(args[name])
        cursor = connection.cursor
        cursor.execute(sql, args)
        return cursor

    def scalar(self, connection: "RawConnection", params: dict):
        """First column of the first row, or None."""
        row = self.execute(connection, params).fetchone()
        return None if row is None else row[0]


class RawConnection:
    """A DBAPI connection in autocommit mode with its dialect, for `RawStatement`s.

    Its statements run on one cursor kept with it: creating a cursor per statement costs the
    voice path more than some of its statements do. A statement's rows are read before the
    next one runs."""

    def __init__(self, dbapi, dialect):
        self.dbapi, self.dialect = dbapi, dialect
        self.cursor = dbapi.cursor()
        self._prepared: set[tuple[str, ...]] = set()

    def prepare(self, statements: tuple[str, ...]) -> None:
        """Run these statements once on this connection (objects of its own, such as TEMP
        views and triggers), before its first use of them."""
        if statements not in self._prepared:
            for sql in statements:
                self.cursor.execute(sql)
            self._prepared.add(statements)

    @contextmanager
    def transaction(self):
        """Statements inside are committed together, or not at all."""
        cursor = self.cursor
        # SQLite: take the write lock now, within the busy timeout, rather than fail on upgrade.
        cursor.execute("BEGIN IMMEDIATE" if self.dialect.name == "sqlite" else "BEGIN")
        try:
            yield self
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")


def open_hot_connection(engine: Engine) -> tuple[object, RawConnection]:
    """A connection taken from `engine`'s pool and detached from it, in autocommit mode: (the
    pool's record of it, the connection).

    SQLite's pages are read as usual, not memory-mapped: with two workers writing, a memory
    map cost the incoming call about 0.08 ms of CPU more (8 %; `make bench-calls`, 2026-12-03)."""
    fairy = engine.raw_connection()
    fairy.detach()
    dbapi = fairy.dbapi_connection
    if engine.dialect.name == "sqlite":
        dbapi.isolation_level = None
    else:
        dbapi.autocommit = True
    return fairy, RawConnection(dbapi, engine.dialect)


def on_hot_connection(work):
    """Run `work(connection)` on this thread's connection for the incoming-call hot path.

    The connection is taken from the pool once and detached from it (no checkout, ping or reset
    per request), in autocommit mode (`open_hot_connection`): each read sees the latest
    committed data, and each write is one statement or uses `RawConnection.transaction()`. Any
    error discards it; when a connection kept from an earlier request turns out to be dead (the
    database restarted), the work is run once more on a new one.
    """
    app = current_app._get_current_object()
    engine, local = app.extensions["svi.voice_engine"], app.extensions["svi.hot_connections"]
    while True:
        held = getattr(local, "held", None)
        fresh = held is None or held[0] != os.getpid()  # first use here, or a forked worker
        if fresh:
            held = local.held = (os.getpid(), *open_hot_connection(engine))
        try:
            return work(held[2])
        except Exception as exc:
            local.held = None
            dbapi_error = engine.dialect.loaded_dbapi.Error
            disconnected = (isinstance(exc, dbapi_error)
                            and engine.dialect.is_disconnect(exc, held[2].dbapi, None))
            try:
                # Detached from the pool: closed as is. Through the pool (`fairy.close()`), a
                # connection the server dropped fails its reset and logs a traceback at ERROR
                # level, one per worker thread at every database restart.
                held[2].dbapi.close()
            except Exception:  # already broken: nothing more to release
                pass
            if fresh or not disconnected:
                raise


def dispose(app: Flask) -> None:
    """Close this thread's hot connection and the pool's connections (an app's end in tests)."""
    held = getattr(app.extensions["svi.hot_connections"], "held", None)
    app.extensions["svi.hot_connections"].held = None
    if held is not None:
        held[1].close()
    app.extensions["svi.engine"].dispose()
    app.extensions["svi.voice_engine"].dispose()


@contextmanager
def transaction():
    """Edge helper for CLI commands: commit (then the after-commit callbacks) on success, roll
    back on error."""
    try:
        yield session()
        commit()  # raises only when the commit itself fails: callbacks' failures are logged
    except BaseException:
        rollback()
        raise
