"""Per-process cache of directory snapshots, invalidated by a version stored in the database.

Any write to a directory table bumps `directory_state.version` in the same transaction, so every
web worker sees an admin's edit on its very next call, and otherwise reads one integer per call
instead of five queries per département.

The national team's incident messages, announced by the phone menu before routing, are part of
what callers hear of the directory: setting or clearing one bumps the version too
(tickets/incidents.py), and the messages are read once per version and per process, with their
expiry, which is applied at each call without a query.

When the database does not answer, calls are routed from the directory the process holds: so
the first département asked for at a new version loads every département at once (a handful of
queries, once per edit), never only those a process happened to route before. Each whole
directory read is also written to a local copy (`JOURNAL_DIR/directory.json`, replaced
atomically), from which a process that starts while the database is down (a worker restarted
during an outage) routes its calls; incident messages and prompt overrides are not in it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import threading
from datetime import date, datetime, time
from pathlib import Path
from typing import Callable

from flask import Flask
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from core.db import DB_UNAVAILABLE, RawConnection, RawStatement
from directory import models
from directory.operations import all_snapshots
from directory.schedule import DepartementView, Exception_, LineView, Slot
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


#: The directory's version; the incoming call reads it with the returning caller in one statement.
VERSION = select(models.DirectoryState.version)
_RAW_VERSION = RawStatement(VERSION)


def current_version(db: Session) -> int:
    """The directory's version (0 before the first edit)."""
    return db.connection().execute(VERSION).scalar() or 0


def read_version(conn: RawConnection) -> int:
    """The directory's version, on the incoming call's raw connection."""
    return _RAW_VERSION.scalar(conn, {}) or 0


def _json_default(value):
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def dump_directory(version: int, views: dict[str, DepartementView]) -> bytes:
    """The local copy of a whole directory: its version and every département's snapshot."""
    return json.dumps({"version": version,
                       "departements": [dataclasses.asdict(v) for v in views.values()]},
                      default=_json_default, ensure_ascii=False).encode()


def _optional_time(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def load_directory(data: bytes) -> tuple[int, dict[str, DepartementView]]:
    """(version, snapshots by code) from a local copy written by `dump_directory`."""
    found = json.loads(data)
    views = {}
    for d in found["departements"]:
        views[d["code"]] = DepartementView(**{
            **d, "lines": tuple(LineView(**line) for line in d["lines"]),
            "slots": tuple(Slot(s["weekday"], time.fromisoformat(s["start"]),
                                time.fromisoformat(s["end"])) for s in d["slots"]),
            "exceptions": tuple(Exception_(
                e["kind"], date.fromisoformat(e["start_date"]), date.fromisoformat(e["end_date"]),
                e["reason"], _optional_time(e["start_time"]), _optional_time(e["end_time"]))
                for e in d["exceptions"]),
            "worked_holidays": frozenset(d["worked_holidays"])})
    return int(found["version"]), views


class DirectoryCache:
    """Snapshots by code for one directory version; replaced wholesale when the version moves.

    `copy`: where the whole directory is kept on disk for a process that starts while the
    database is down (None: no copy)."""

    def __init__(self, copy: Path | None = None) -> None:
        self._version: int | None = None
        self._views: dict[str, DepartementView | None] = {}
        #: The version whose every département is in `_views`.
        self._whole: int | None = None
        self.copy = Path(copy) if copy is not None else None
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
                    session().rollback()
                    # The database does not answer: route from the directory this process
                    # holds, or else from the last one read on this host.
                    if self._version is None and not self._load_copy():
                        raise
                    known.append(self._version)
            if known[0] != self._version:
                self._version, self._views = known[0], {}
            return known[0]

        def get(code: str) -> DepartementView | None:
            version = current()
            views = self._views
            if code not in views:
                if self._whole != version:  # every département at once, once per version
                    try:
                        views = self._read_whole(session(), version)
                    except DB_UNAVAILABLE:
                        session().rollback()
                        views = self._copy_views()
                        if views is None:
                            raise
                views.setdefault(code, views.get(code.upper()))
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

    def _read_whole(self, session: Session, version: int) -> dict[str, DepartementView | None]:
        """Every département's snapshot at `version` (the statements read the latest committed
        directory: an edit committed since `version` was read is at most one call early), kept
        and copied to disk."""
        views: dict[str, DepartementView | None] = {v.code: v for v in all_snapshots(session)}
        with self._lock:
            if self._version == version:
                self._views, self._whole = views, version
        self._write_copy(version, views)
        return views

    def _write_copy(self, version: int, views: dict) -> None:
        if self.copy is None:
            return
        try:
            self.copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = self.copy.with_name(f".{self.copy.name}.{os.getpid()}-{secrets.token_hex(4)}")
            partial.write_bytes(dump_directory(version, views))
            os.replace(partial, self.copy)  # readers see the old copy or the new, never half
        except OSError:
            log.warning("copie locale de l'annuaire impossible dans %s", self.copy, exc_info=True)

    def _read_copy(self) -> tuple[int, dict[str, DepartementView | None]] | None:
        if self.copy is None:
            return None
        try:
            return load_directory(self.copy.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("copie locale de l'annuaire illisible : %s", self.copy, exc_info=True)
            return None

    def _load_copy(self) -> bool:
        """Take the local copy when this process holds no directory yet; True if taken."""
        found = self._read_copy()
        if found is None:
            return False
        version, views = found
        with self._lock:
            if self._version is None:
                self._version, self._views, self._whole = version, views, version
                self._messages = (version, ())  # not in the copy: none, without a query each
                log.warning("base indisponible : appels orientés selon la copie locale de "
                            "l'annuaire (version %d)", version)
        return True

    def _copy_views(self) -> dict[str, DepartementView | None] | None:
        """The local copy's départements, for a version whose whole directory could not be
        read (the database went down right after its version was)."""
        found = self._read_copy()
        return dict(found[1]) if found is not None else None

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
    app.extensions["svi.directory_cache"] = DirectoryCache(
        Path(app.config["JOURNAL_DIR"]) / "directory.json")
    watch(app.extensions["svi.sessionmaker"])
