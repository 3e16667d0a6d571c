"""Per-process cache of directory snapshots, invalidated by a version stored in the database.

Any write to a directory table bumps `directory_state.version` in the same transaction, so every
web worker sees an admin's edit on its very next call, and otherwise reads one integer per call
instead of five queries per département.

The national team's incident messages, announced by the phone menu before routing, are part of
what callers hear of the directory: setting or clearing one bumps the version too
(tickets/incidents.py), and the messages are read once per version and per process, with their
expiry, which is applied at each call without a query.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from flask import Flask
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from core.db import DB_UNAVAILABLE, RawConnection, RawStatement
from directory import models
from directory.operations import snapshot
from directory.schedule import DepartementView
from prompts.models import PromptOverride
from tickets import incidents
from tickets.incidents import Announcement

log = logging.getLogger("svi.directory")

#: Prompt overrides are part of what callers hear of the directory: an edit bumps the version
#: too, which is how the voice path (prompts/overrides.py) sees it without a query per webhook.
DIRECTORY_MODELS = (models.Departement, models.Line, models.OpeningSlot, models.DateException,
                    models.WorkedHoliday, PromptOverride)
DIRECTORY_TABLES = {m.__tablename__ for m in DIRECTORY_MODELS}
_CHANGED = "svi.directory_changed"


def announced(found: tuple[Announcement, ...], code: str | None, now: datetime) -> tuple[str, ...]:
    """The messages heard at `now` by callers of département `code`: those for every
    département, then its own, each until its expiry."""
    return tuple(incidents.messages_for(incidents.group(list(found), now), code))


_VERSION = select(models.DirectoryState.version)
_RAW_VERSION = RawStatement(_VERSION)


def current_version(db: Session) -> int:
    """The directory's version (0 before the first edit)."""
    return db.connection().execute(_VERSION).scalar() or 0


def read_version(conn: RawConnection) -> int:
    """The directory's version, on the incoming call's raw connection."""
    return _RAW_VERSION.scalar(conn, {}) or 0


class DirectoryCache:
    """Snapshots by code for one directory version; replaced wholesale when the version moves."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._views: dict[str, DepartementView | None] = {}
        #: (version, announcements) as last read.
        self._messages: tuple[int | None, tuple[Announcement, ...]] | None = None
        self._lock = threading.Lock()

    @property
    def version(self) -> int | None:
        """The latest directory version this process has read (None before the first)."""
        return self._version

    def lookup(self, session: Callable[[], Session], *, version: int | None = None):
        """A lookup function for one request: reads the version once (unless the caller already
        did), then serves snapshots; `session()` is only opened for a snapshot not cached yet.

        Its `announcements(code, now)` gives the incident messages heard now in a département."""
        known: list[int] = [] if version is None else [version]
        if version is not None and version != self._version:
            # Known now, whether or not a snapshot is asked for (the prompt overrides follow it).
            self._version, self._views = version, {}

        def current() -> int:
            if not known:
                try:
                    known.append(current_version(session()))
                except DB_UNAVAILABLE:
                    if self._version is None:
                        raise
                    # The database does not answer: route from the directory this process holds.
                    session().rollback()
                    known.append(self._version)
            if known[0] != self._version:
                self._version, self._views = known[0], {}
            return known[0]

        def get(code: str) -> DepartementView | None:
            current()
            views = self._views
            if code not in views:
                views[code] = snapshot(session(), code)
            return views[code]

        def announcements(code: str | None, now: datetime) -> tuple[str, ...]:
            try:
                version_now = current()
            except DB_UNAVAILABLE:
                session().rollback()
                version_now = None  # nothing read yet: whatever this process holds, if anything
            return announced(self._announcements(session, version_now), code, now)

        get.announcements = announcements
        return get

    def _announcements(self, session: Callable[[], Session],
                       version: int | None) -> tuple[Announcement, ...]:
        """The messages at `version`, read when it is new; those held when the database does
        not answer (or the version is unknown)."""
        held = self._messages
        if held is not None and (version is None or held[0] == version):
            return held[1]
        if version is None:
            return ()
        with self._lock:
            held = self._messages
            if held is not None and held[0] == version:
                return held[1]
            try:
                messages = tuple(incidents.announcements(session()))  # expired ones included
            except Exception:  # the caller is routed all the same, with what the process holds
                log.warning("incident messages unreadable at directory version %s", version,
                            exc_info=True)
                try:
                    session().rollback()
                except Exception:
                    pass
                return held[1] if held else ()
            self._messages = (version, messages)
            return messages


def _mark_if_directory(session: Session, instances) -> None:
    if any(isinstance(obj, DIRECTORY_MODELS) for obj in instances):
        session.info[_CHANGED] = True


def watch(session_factory) -> None:
    """Bump the directory version on commit of any transaction that wrote directory rows."""

    @event.listens_for(session_factory, "before_flush")
    def _before_flush(session, _ctx, _instances):
        _mark_if_directory(session, list(session.new) + list(session.dirty) + list(session.deleted))

    @event.listens_for(session_factory, "do_orm_execute")
    def _bulk(state):
        if (state.is_update or state.is_delete) and state.bind_mapper is not None \
                and state.bind_mapper.local_table.name in DIRECTORY_TABLES:
            state.session.info[_CHANGED] = True

    @event.listens_for(session_factory, "before_commit")
    def _bump(session):
        session.flush()
        if session.info.pop(_CHANGED, False):
            bumped = session.execute(text("UPDATE directory_state SET version = version + 1 WHERE id = 1"))
            if bumped.rowcount == 0:
                session.execute(text("INSERT INTO directory_state (id, version) VALUES (1, 1)"))

    @event.listens_for(session_factory, "after_rollback")
    def _forget(session):
        session.info.pop(_CHANGED, None)


def init_app(app: Flask) -> None:
    """Create the app's cache and watch its sessions."""
    app.extensions["svi.directory_cache"] = DirectoryCache()
    watch(app.extensions["svi.sessionmaker"])
