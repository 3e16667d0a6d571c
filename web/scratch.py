"""Folders of short-lived files the pages keep between two requests (an import awaiting its
confirmation, a simulated call): one per purpose under the instance folder, emptied of old files."""

from __future__ import annotations

import time
from pathlib import Path

from flask import current_app

#: A file older than this was abandoned (a preview never confirmed, a call never finished).
MAX_AGE_SECONDS = 24 * 3600


def folder(name: str) -> Path:
    """The instance sub-folder `name`, created if needed, without its abandoned files."""
    path = Path(current_app.instance_path) / name
    path.mkdir(parents=True, exist_ok=True)
    limit = time.time() - MAX_AGE_SECONDS
    for old in path.iterdir():
        try:
            if old.is_file() and old.stat().st_mtime < limit:
                old.unlink()
        except OSError:  # removed meanwhile by another request: nothing to do
            pass
    return path
