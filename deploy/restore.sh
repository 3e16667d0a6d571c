#!/usr/bin/env bash
# Restore a backup made by deploy/backup.sh into a database.
#
#   deploy/restore.sh [--clean] BACKUP [TARGET_URL]
#
# TARGET_URL (default DATABASE_URL; empty: instance/svi.sqlite3) must be an empty database:
# a new PostgreSQL database (createdb -O svi svi_restored), or a SQLite file that does not exist
# yet. --clean replaces what the target holds (PostgreSQL: pg_restore --clean; SQLite: the file
# is overwritten): stop the web instances and the scheduler first. A .dump is restored with
# pg_restore in one transaction (all or nothing), without owners or privileges (the connecting
# role owns everything); a .sqlite3 is copied with SQLite's backup API and checked.
# Then: `flask --app app db upgrade` (a backup of an older release gets its migrations).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
clean=0
if [ "${1:-}" = --clean ]; then clean=1; shift; fi
[ $# -ge 1 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
backup="$1"
url="${2:-${DATABASE_URL:-sqlite:///$ROOT/instance/svi.sqlite3}}"
pg() { "${PG_BIN:+$PG_BIN/}$1" "${@:2}"; }
[ -f "$backup" ] || { echo "sauvegarde introuvable : $backup" >&2; exit 1; }

eval "$("$PYTHON" "$ROOT/deploy/dbtool.py" env "$url")"
case "$DB_KIND:$backup" in
  postgresql:*.dump)
    tables="$(pg psql -X -tA -c "select count(*) from pg_tables where schemaname = 'public'")"
    options=()
    if [ "$tables" != 0 ]; then
      if [ "$clean" = 0 ]; then
        echo "la base $PGDATABASE n'est pas vide ($tables tables) : base neuve, ou --clean" >&2
        exit 1
      fi
      options=(--clean --if-exists)
    fi
    pg pg_restore --no-owner --no-privileges --single-transaction --exit-on-error \
      "${options[@]}" --dbname="$PGDATABASE" "$backup"
    ;;
  sqlite:*.sqlite3)
    if [ -e "$SQLITE_PATH" ] && [ "$clean" = 0 ]; then
      echo "le fichier $SQLITE_PATH existe : nouveau fichier, ou --clean" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$SQLITE_PATH")"
    rm -f "$SQLITE_PATH-wal" "$SQLITE_PATH-shm"
    "$PYTHON" "$ROOT/deploy/dbtool.py" sqlite-copy "$backup" "$SQLITE_PATH"
    ;;
  *)
    echo "sauvegarde $backup et base $DB_KIND incompatibles (.dump : PostgreSQL, .sqlite3 : SQLite)" >&2
    exit 1
    ;;
esac
echo "restauré dans ${PGDATABASE:-$SQLITE_PATH} ; ensuite : flask --app app db upgrade"
