"""A durable journal of tracking records the database could not take in time.

When a webhook's record cannot be committed within the voice path's short lock wait (another
process holds SQLite's write lock, the database is unreachable), the caller is answered all the
same and the record is appended here: one JSON line, flushed and fsynced before the answer
leaves, in a file of this process's own (`<folder>/<pid>-<random>.jsonl`, locked with flock
while the process lives). Records that arrive while some are waiting are appended behind them,
so a call's records keep their order. A thread of the process replays the journal as soon as
the database answers again, oldest first, by batches, each record's id stored in
`journal_replays` in the same transaction: a replay cut short after a commit never applies a
record twice. Once every record is applied the file is deleted: a journal file on disk always
holds records waiting for the database (or is being written).

Journals left by a dead process (a worker killed, a server stopped during an outage: their
flock is free) are replayed by `replay_orphans`: by a new web process at its start-up
(`init_app`, in a thread, retried until the database answers), by every process whose own
journal has just been replayed (the database is back), by the scheduler every minute and by
`flask tracking replay-journal`. A record no replay can apply (not because the database is
unavailable, but because of the record itself) is set aside in `rejected.jsonl`, never dropped
and never blocking the records behind it.
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
#: A journal file being created (not yet locked): never taken for a dead process's journal.
_CREATING = ".creating"


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
        self.path: Path | None = None
        self._thread: threading.Thread | None = None

    # -- writing -----------------------------------------------------------------------------
    def _own_file(self):
        if self._pid != os.getpid():  # first use, or a forked worker
            if self._file is not None:  # the parent's: its lock stays the parent's
                self._file.close()
            self._file, self._pending = None, deque()  # the parent's entries are its own
        if self._file is None:
            # Records hold personal data (a callback number, say): the service's user only.
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = f"{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            # Created and locked under another name, then renamed: an orphan replay never
            # finds this file unlocked (it would take it for a dead process's and delete it).
            creating = self.folder / (name + _CREATING)
            f = os.fdopen(os.open(creating, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600), "a+b")
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(creating, self.folder / name)
            self._file, self._pid, self.path = f, os.getpid(), self.folder / name
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
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._replay_loop, name="svi-journal",
                                                daemon=True)
                self._thread.start()

    def _replay_loop(self) -> None:
        backoff = 0.2
        while True:
            try:
                self.replay_pending()  # until none is left
            except Exception:
                log.warning("journal : la base refuse encore les écritures, nouvel essai dans "
                            "%.1f s", backoff, exc_info=log.isEnabledFor(logging.DEBUG))
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            # The database is back: journals of processes that died meanwhile, at once.
            try:
                replay_orphans(self.folder, self.sessions)
            except Exception:
                log.warning("journal : rejeu des journaux de processus disparus remis au "
                            "planificateur", exc_info=log.isEnabledFor(logging.DEBUG))
            with self._lock:  # records appended meanwhile found this thread alive: ours
                if not self.has_pending():
                    self._thread = None
                    return

    def replay_pending(self) -> bool:
        """Apply waiting entries in order until none is left (False) or the database fails
        (raises). Entries go by batches of REPLAY_BATCH, one transaction each (see
        `apply_in_order`); the file is deleted once all are applied."""
        while True:
            with self._lock:
                if not self.has_pending():
                    self._close_drained()
                    return False
                batch = [self._pending[i] for i in range(min(REPLAY_BATCH, len(self._pending)))]
            apply_in_order(self.sessions, batch, self.folder)
            with self._lock:
                for _ in batch:
                    self._pending.popleft()
                if not self._pending:  # with the last entry, under the same lock: the file
                    self._close_drained()  # is gone once nothing waits

    def _close_drained(self) -> None:
        """Every entry is applied: the file goes (a new one is made by the next append)."""
        if self._file is not None and self._pid == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self._file.close()  # the lock goes with it
            self._file = None

    def wait_until_empty(self, timeout: float) -> bool:
        """Block until every waiting record is replayed (tests, shutdown); True when empty."""
        deadline = time.monotonic() + timeout
        while self._waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._waiting()

    def _waiting(self) -> bool:
        with self._lock:  # the last entry's removal and its file's deletion are seen together
            return self.has_pending()


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


def apply_in_order(sessions: sessionmaker, entries: list[dict], folder: Path) -> int:
    """Apply `entries` in order, one transaction per batch; entries applied. The database
    failing raises (nothing of the failed batch is applied: retry later, same order). A batch
    that fails otherwise is applied one entry at a time, and an entry no replay can apply is
    set aside (`rejected.jsonl`) rather than block the others."""
    applied = 0
    for start in range(0, len(entries), REPLAY_BATCH):
        batch = entries[start:start + REPLAY_BATCH]
        try:
            applied += apply_entries(sessions, batch)
            continue
        except DB_ERRORS:
            raise
        except Exception:
            log.warning("journal : un lot de %d enregistrement(s) refusé, rejeu un par un",
                        len(batch), exc_info=True)
        for entry in batch:
            try:
                applied += apply_entries(sessions, [entry])
            except DB_ERRORS:
                raise
            except Exception:
                log.exception("journal : enregistrement %s impossible à appliquer, mis de côté "
                              "dans %s", entry.get("id"), Path(folder) / REJECTED)
                set_aside(folder, entry)
    return applied


def set_aside(folder: Path, entry: dict) -> None:
    """Append an entry no replay can apply to `rejected.jsonl` (fsynced), for the operator."""
    Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(Path(folder) / REJECTED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
              "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _journals(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.jsonl") if p.name != REJECTED)


def orphans(folder: Path) -> list[Path]:
    """Journals of processes that are gone (their lock is free), left to replay."""
    found = []
    for path in _journals(folder):
        try:
            with open(path, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                found.append(path)
        except (BlockingIOError, FileNotFoundError):
            continue
    return found


def replay_orphans(folder: Path, sessions: sessionmaker) -> int:
    """Replay the journals of processes that are gone, oldest line first; entries applied.

    A journal whose flock is held belongs to a live process, which replays it itself; one
    deleted meanwhile was replayed by another replayer. A file is deleted once all its entries
    are applied; a line that cannot be read (cut by a crash while it was written) is logged and
    skipped. The database failing raises: what was applied stays applied, the rest is retried
    by the next replay.
    """
    applied = 0
    for path in _journals(folder):
        try:
            f = open(path, "r+b")
        except FileNotFoundError:  # replayed and deleted by another process meanwhile
            continue
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if os.fstat(f.fileno()).st_nlink == 0:  # deleted while we waited for it
                continue
            entries = []
            for number, raw in enumerate(f.read().splitlines(), start=1):
                try:
                    entries.append(json.loads(raw))
                except ValueError:
                    log.error("journal %s, ligne %d illisible : ignorée", path.name, number)
            count = apply_in_order(sessions, entries, folder)
            path.unlink(missing_ok=True)
        applied += count
        if entries:
            log.warning("journal d'un processus disparu rejoué : %s, %d enregistrement(s) "
                        "dont %d appliqué(s) maintenant", path.name, len(entries), count)
    return applied


def replay_at_start(app) -> threading.Thread | None:
    """At a web process's start-up, replay the journals of processes that died (a worker
    killed, the server stopped while the database was down), in a thread that retries until
    the database answers. None when there is nothing to replay."""
    folder, sessions = Path(app.config["JOURNAL_DIR"]), app.extensions["svi.sessionmaker"]
    if not orphans(folder):
        return None

    def run() -> None:
        backoff = 0.5
        while True:
            try:
                replay_orphans(folder, sessions)
                return
            except DB_ERRORS:
                log.warning("journal : base indisponible au démarrage, rejeu des journaux de "
                            "processus disparus dans %.1f s", backoff)
            except Exception:
                log.exception("journal : rejeu au démarrage interrompu (repris par le "
                              "planificateur)")
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    thread = threading.Thread(target=run, name="svi-journal-orphans", daemon=True)
    thread.start()
    return thread


def entries_holding(folder: Path, needle: str) -> list[dict]:
    """Entries still written in any journal of `folder` (every process's, this one's included)
    whose line holds `needle`: what another worker recorded but could not commit yet.

    Journals only exist while records wait for the database, so this reads nothing then; a
    line being written (not yet whole) is skipped."""
    found, key = [], needle.encode()
    for path in _journals(folder):
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


#: Referents' acceptances noted on disk (see `note_acceptance`): one file per this many seconds.
ACCEPTED_WINDOW = 600
#: Files of noted acceptances kept this long: longer than any forwarded call lasts.
ACCEPTED_KEEP = 3 * 3600


def note_acceptance(folder: Path, leg_sid: str) -> None:
    """Note on this host that the referent of `leg_sid` accepted the call.

    The dial result that follows may reach another worker when the database has just become
    unavailable: the acceptance it then cannot read is found here, so the caller, connected
    and talking, is not told afterwards that every line was busy. One short append (no fsync:
    only live processes need it) to a file of the current ten minutes; older files go."""
    folder = Path(folder)
    window = int(time.time() // ACCEPTED_WINDOW)
    path = folder / f"accepted-{window}.txt"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o600)
        created = True
    except FileExistsError:
        fd, created = os.open(path, flags, 0o600), False
    except FileNotFoundError:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, created = os.open(path, flags, 0o600), True
    try:
        os.write(fd, leg_sid.encode() + b"\n")
    finally:
        os.close(fd)
    if created:  # the first of its window: the files no call can still need go
        for old in folder.glob("accepted-*.txt"):
            stem = old.stem.removeprefix("accepted-")
            if stem.isdigit() and int(stem) < window - ACCEPTED_KEEP // ACCEPTED_WINDOW:
                old.unlink(missing_ok=True)


def acceptance_noted(folder: Path, leg_sid: str) -> bool:
    """True when `note_acceptance` noted this leg on this host."""
    key = leg_sid.encode()
    for path in Path(folder).glob("accepted-*.txt"):
        try:
            if key in path.read_bytes().splitlines():
                return True
        except OSError:
            continue
    return False


def journal_of(app) -> Journal:
    """The app's journal (created on first use)."""
    journal = app.extensions.get("svi.journal")
    if journal is None:
        journal = app.extensions["svi.journal"] = Journal(
            app.config["JOURNAL_DIR"], app.extensions["svi.sessionmaker"])
    return journal


def init_app(app) -> None:
    """A web process starts: journals left by dead processes are replayed (not for the
    `flask` commands: the scheduler replays them every minute, `flask tracking replay-journal`
    on demand)."""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        replay_at_start(app)
