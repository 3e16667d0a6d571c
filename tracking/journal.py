"""A durable journal of tracking records the database could not take in time.

When a webhook's record cannot be committed within the voice path's short lock wait (another
process holds SQLite's write lock, the database is unreachable), the caller is answered all the
same and the record is appended here: one JSON line, flushed and fsynced before the answer
leaves, in a file of this process's own (`<folder>/<pid>-<random>.jsonl`, locked with flock
while the process lives). Records that arrive while some are waiting are appended behind them,
so a call's records keep their order. A thread of the process replays the journal as soon as
the database answers again, oldest first, each record in its own transaction together with its
id in `journal_replays`: a replay cut short after a commit never applies a record twice.
Journals left by a dead process (their flock is free) are replayed by `replay_orphans`, run by
the scheduler and by `flask tracking replay-journal`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from core.db import DB_UNAVAILABLE
from tracking import recorder
from tracking.models import JournalReplay

log = logging.getLogger("svi.journal")

#: Seconds between two replay attempts while the database refuses, at most.
MAX_BACKOFF = 5.0
DB_ERRORS = DB_UNAVAILABLE
#: Entries replayed per transaction.
REPLAY_BATCH = 100
#: Where entries no replay can apply are set aside for the operator (never replayed again).
REJECTED = "rejected.jsonl"


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


class Journal:
    """This process's journal: append, and replay in the background."""

    def __init__(self, folder: Path, sessions: sessionmaker):
        self.folder, self.sessions = Path(folder), sessions
        self._lock = threading.Lock()
        self._pending: deque[dict] = deque()
        self._file = None
        self._pid = None
        self._thread: threading.Thread | None = None

    # -- writing -----------------------------------------------------------------------------
    def _own_file(self):
        if self._file is None or self._pid != os.getpid():  # first use, or a forked worker
            if self._pid != os.getpid():
                self._pending.clear()  # the parent's entries are the parent's to replay
            # Records hold personal data (a caller's hash, say): the service's user only.
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.folder / f"{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            self._file = os.fdopen(os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600),
                                   "a+b")
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._pid, self.path = os.getpid(), path
        return self._file

    def has_pending(self) -> bool:
        """True while records of this process wait for the database."""
        return bool(self._pending) and self._pid == os.getpid()

    def pending(self) -> list[dict]:
        """The waiting entries of this process, oldest first."""
        with self._lock:
            return list(self._pending) if self._pid == os.getpid() else []

    def append(self, kind: str, payload: dict) -> dict:
        """Write a record durably (fsync) and schedule its replay; the entry written."""
        entry = {"id": secrets.token_hex(16), "kind": kind, "payload": payload}
        line = json.dumps(entry, default=_json_default, ensure_ascii=False) + "\n"
        with self._lock:
            f = self._own_file()
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
            self._pending.append(json.loads(line))
        self._start_replayer()
        return entry

    # -- replaying ---------------------------------------------------------------------------
    def _start_replayer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._replay_loop, name="svi-journal",
                                            daemon=True)
            self._thread.start()

    def _replay_loop(self) -> None:
        backoff = 0.2
        while True:
            try:
                if not self.replay_pending():
                    return
            except Exception:
                log.warning("journal: la base refuse encore les écritures, nouvel essai dans "
                            "%.1f s", backoff, exc_info=log.isEnabledFor(logging.DEBUG))
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def replay_pending(self) -> bool:
        """Apply waiting entries in order until none is left (False) or the database fails
        (raises). Entries go by batches of REPLAY_BATCH, one transaction each; a batch that
        fails otherwise is retried one entry at a time, and an entry no replay can apply is set
        aside (`rejected.jsonl`) rather than block the others."""
        while True:
            with self._lock:
                if not self.has_pending():
                    self._truncate()
                    return False
                batch = [self._pending[i] for i in range(min(REPLAY_BATCH, len(self._pending)))]
            try:
                apply_entries(self.sessions, batch)
            except DB_ERRORS:
                raise  # the database still refuses: try again later, in the same order
            except Exception:
                batch = batch[:1]
                try:
                    apply_entries(self.sessions, batch)
                except DB_ERRORS:
                    raise
                except Exception:
                    log.exception("journal : enregistrement %s impossible à appliquer, mis de "
                                  "côté dans %s", batch[0]["id"], self.folder / REJECTED)
                    with open(os.open(self.folder / REJECTED, os.O_WRONLY | os.O_APPEND
                                      | os.O_CREAT, 0o600), "a", encoding="utf-8") as f:
                        f.write(json.dumps(batch[0], ensure_ascii=False) + "\n")
            with self._lock:
                for _ in batch:
                    self._pending.popleft()

    def _truncate(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.truncate(0)
            self._file.flush()
            os.fsync(self._file.fileno())

    def wait_until_empty(self, timeout: float) -> bool:
        """Block until every waiting record is replayed (tests, shutdown); True when empty."""
        deadline = time.monotonic() + timeout
        while self.has_pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.has_pending()


def apply_entries(sessions: sessionmaker, entries: list[dict]) -> int:
    """Apply journal entries in order, in one transaction; those applied before are skipped.

    Returns how many were applied now. Each applied entry's id is stored in the same
    transaction, so a replay cut short after its commit never applies an entry twice.
    """
    with sessions() as db:
        done = set(db.scalars(select(JournalReplay.id).where(
            JournalReplay.id.in_([e["id"] for e in entries]))))
        fresh = [e for e in entries if e["id"] not in done]
        for entry in fresh:
            recorder.apply(db, entry["kind"], entry["payload"])
            db.add(JournalReplay(id=entry["id"]))
        try:
            db.commit()
        except IntegrityError:  # another replayer applied some of them meanwhile?
            db.rollback()
            if len(fresh) > 1:
                return sum(apply_entries(sessions, [e]) for e in fresh)
            if db.get(JournalReplay, fresh[0]["id"]) is None:
                raise  # not a race: the entry itself is at fault
            return 0
    return len(fresh)


def replay_orphans(folder: Path, sessions: sessionmaker) -> int:
    """Replay the journals of processes that are gone, oldest line first; entries applied.

    A journal whose flock is held belongs to a live process, which replays it itself. A file is
    deleted once all its entries are applied; a line that cannot be read (cut by a crash while
    it was written) is logged and skipped.
    """
    applied = 0
    for path in sorted(Path(folder).glob("*.jsonl")):
        if path.name == REJECTED:
            continue
        with open(path, "r+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            entries = []
            for number, raw in enumerate(f.read().splitlines(), start=1):
                try:
                    entries.append(json.loads(raw))
                except ValueError:
                    log.error("journal %s, ligne %d illisible : ignorée", path.name, number)
            for start in range(0, len(entries), REPLAY_BATCH):
                applied += apply_entries(sessions, entries[start:start + REPLAY_BATCH])
            path.unlink()
    return applied


def entries_holding(folder: Path, needle: str) -> list[dict]:
    """Entries still written in any journal of `folder` (every process's, this one's included)
    whose line holds `needle`: what another worker recorded but could not commit yet.

    Journals are empty while the database takes writes, so this reads next to nothing then; a
    line being written (not yet whole) is skipped."""
    found, key = [], needle.encode()
    for path in Path(folder).glob("*.jsonl"):
        if path.name == REJECTED:
            continue
        try:
            data = path.read_bytes()
        except OSError:  # deleted meanwhile by a replay
            continue
        for raw in data.splitlines() if key in data else ():
            if key in raw:
                try:
                    found.append(json.loads(raw))
                except ValueError:
                    continue
    return found


def journal_of(app) -> Journal:
    """The app's journal (created on first use)."""
    journal = app.extensions.get("svi.journal")
    if journal is None:
        journal = app.extensions["svi.journal"] = Journal(
            app.config["JOURNAL_DIR"], app.extensions["svi.sessionmaker"])
    return journal
