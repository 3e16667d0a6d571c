"""The overrides the voice path uses: every admin's text and recording, read once per directory
version and per process, never once per webhook.

`prompt_overrides` is one of the directory's tables (directory/cache.py), so any edit bumps
`directory_state.version`, which every webhook already reads (the incoming call on its hot
connection, later steps when they look a département up). `current()` serves the overrides of
the latest version this process has read: one query when the version moves, none otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from flask import Flask, current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import db

log = logging.getLogger("svi.prompts")


@dataclass(frozen=True)
class Overrides:
    """Overrides by (prompt name, département code or None for national): (text, audio)."""

    entries: dict[tuple[str, str | None], tuple[str | None, str | None]] = field(
        default_factory=dict)
    #: Digest of the entries: part of the TwiML memo's key ("" when there are none).
    fingerprint: str = ""

    @classmethod
    def of(cls, rows) -> "Overrides":
        """Overrides from (name, departement_code, text, audio) rows."""
        entries = {(name, code): (text, audio) for name, code, text, audio in rows
                   if text is not None or audio is not None}
        if not entries:
            return NONE
        digest = hashlib.sha256(repr(sorted(entries.items(), key=repr)).encode()).hexdigest()
        return cls(entries, digest)

    def resolve(self, name: str, departement: str | None) -> tuple[str | None, str | None]:
        """(text, audio) of the most specific level replacing `name` for this département
        (its own, then national); (None, None) when the default applies."""
        if departement:
            own = self.entries.get((name, departement))
            if own is not None:
                return own
        return self.entries.get((name, None), (None, None))


NONE = Overrides()


def load(db: Session) -> Overrides:
    """Every override, read in one query."""
    from prompts.models import PromptOverride
    return Overrides.of(db.execute(select(PromptOverride.name, PromptOverride.departement_code,
                                          PromptOverride.text, PromptOverride.audio)))


class OverridesCache:
    """The overrides of one directory version, replaced when the version moves."""

    def __init__(self) -> None:
        self._held: tuple[int | None, Overrides] = (None, NONE)
        self._lock = threading.Lock()

    def get(self, version: int | None, session: Callable[[], Session]) -> Overrides:
        """The overrides at `version`; read when it is new. Unknown version (the database never
        answered) or a failed read: the overrides this process holds."""
        held_version, overrides = self._held
        if version is None or version == held_version:
            return overrides
        with self._lock:
            if self._held[0] == version:
                return self._held[1]
            try:
                overrides = load(session())
            except Exception:  # the caller is answered with what the process holds
                log.warning("prompt overrides unreadable at directory version %s", version,
                            exc_info=True)
                try:
                    session().rollback()
                except Exception:
                    pass
                return self._held[1]
            self._held = (version, overrides)
            return overrides


def current() -> Overrides:
    """The overrides at the directory version this process read last (none outside an app)."""
    if not has_app_context():
        return NONE
    cache = current_app.extensions.get("svi.prompt_overrides")
    directory = current_app.extensions.get("svi.directory_cache")
    if cache is None or directory is None:
        return NONE
    return cache.get(directory.version, db.session)


def init_app(app: Flask) -> None:
    """Give the app its overrides cache."""
    app.extensions["svi.prompt_overrides"] = OverridesCache()
