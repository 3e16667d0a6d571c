"""Helpers of deploy/backup.sh and deploy/restore.sh (run with the service's Python).

    python deploy/dbtool.py env URL          shell assignments: PG* variables, or SQLITE_PATH
    python deploy/dbtool.py sqlite-copy SRC DST
        copy a SQLite database with SQLite's online backup API (what the sqlite3 shell's
        `.backup` does: consistent while the service writes), then check the copy's integrity

The password of a PostgreSQL URL goes to PGPASSWORD, never to a command line (`ps` shows those).
"""

from __future__ import annotations

import shlex
import sqlite3
import sys
from pathlib import Path

from sqlalchemy.engine import make_url


def env(url: str) -> str:
    """`DB_KIND=…` and the variables libpq (pg_dump, pg_restore, psql) or the scripts read."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise SystemExit("base SQLite sans fichier : rien à sauvegarder")
        return f"DB_KIND=sqlite\nSQLITE_PATH={shlex.quote(parsed.database)}\n"
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit(f"base non prise en charge : {parsed.get_backend_name()}")
    query = dict(parsed.query)
    values = {"PGHOST": parsed.host or query.get("host"), "PGPORT": parsed.port or query.get("port"),
              "PGUSER": parsed.username or query.get("user"),
              "PGPASSWORD": parsed.password or query.get("password"),
              "PGDATABASE": parsed.database, "PGSSLMODE": query.get("sslmode")}
    lines = ["DB_KIND=postgresql"]
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in values.items() if v]
    return "\n".join(lines) + "\n"


def sqlite_copy(source: str, target: str) -> None:
    """Copy `source` into `target` page by page under SQLite's own locking, then check it."""
    if not Path(source).is_file():
        raise SystemExit(f"fichier introuvable : {source}")
    src = sqlite3.connect(source)  # read only in effect; a WAL database needs its -shm writable
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise SystemExit(f"copie SQLite corrompue ({target}) : {verdict}")
    finally:
        dst.close()
        src.close()


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "env":
        sys.stdout.write(env(argv[1]))
    elif len(argv) == 3 and argv[0] == "sqlite-copy":
        sqlite_copy(argv[1], argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
