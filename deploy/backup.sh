#!/usr/bin/env bash
# Back up the SVI database: PostgreSQL with pg_dump (custom format, -Fc), SQLite with SQLite's
# online backup (what the sqlite3 shell's `.backup` does). Safe while the service runs.
#
#   deploy/backup.sh [DEST_DIR]
#
# DATABASE_URL: the database (empty: instance/svi.sqlite3, like the app). DEST_DIR (or
# BACKUP_DIR, default /var/backups/svi) receives svi-<UTC time>.dump or .sqlite3; the newest
# BACKUP_KEEP (default 14) are kept, older ones deleted. PG_BIN: folder of pg_dump if not on PATH.
# Prints the new backup's path. Exit status non-zero on any failure (for cron/systemd alerts).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
dest="${1:-${BACKUP_DIR:-/var/backups/svi}}"
keep="${BACKUP_KEEP:-14}"
url="${DATABASE_URL:-sqlite:///$ROOT/instance/svi.sqlite3}"
pg() { "${PG_BIN:+$PG_BIN/}$1" "${@:2}"; }

eval "$("$PYTHON" "$ROOT/deploy/dbtool.py" env "$url")"
mkdir -p "$dest"
chmod 700 "$dest"  # personal data: the service's user only
stamp="$(date -u +%Y%m%dT%H%M%S.%3NZ)"
umask 077
if [ "$DB_KIND" = postgresql ]; then
  file="$dest/svi-$stamp.dump"
  pg pg_dump --format=custom --compress=6 --file="$file.partial"
  pg pg_restore --list "$file.partial" >/dev/null  # readable archive, or fail now
else
  file="$dest/svi-$stamp.sqlite3"
  "$PYTHON" "$ROOT/deploy/dbtool.py" sqlite-copy "$SQLITE_PATH" "$file.partial"
fi
mv "$file.partial" "$file"
# Retention: the newest $keep backups of this kind stay.
# (an array, not xargs: a folder with a space in its path stays one path)
mapfile -t old < <(ls -1 "$dest"/svi-*."${file##*.}" | sort -r | tail -n +"$((keep + 1))")
[ "${#old[@]}" -eq 0 ] || rm -f -- "${old[@]}"
echo "$file"
