"""Write the audit log. Every operation that changes the directory or an account calls `record`
itself, so the web, the CLI and the imports are audited by one code path. Flush-only."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from sqlalchemy.orm import Session

from audit.models import AuditEntry
from core import text as text_policy
from core.db import utcnow

MAX_VALUE = 4000  # characters kept of one value: the longest text people write (a comment)
MAX_ACTOR = 300  # characters kept of who made a change (the column's size)


@dataclass(frozen=True)
class Actor:
    """Who makes a change."""

    label: str
    user_id: int | None = None

    @classmethod
    def user(cls, user) -> "Actor":
        """A person logged in to the web interface."""
        return cls(f"utilisateur:{user.email}", user.id)

    @classmethod
    def api(cls, user) -> "Actor":
        """A person's API token (the JSON API acts in its owner's name)."""
        return cls(f"api:{user.email}", user.id)

    @classmethod
    def cli(cls) -> "Actor":
        """A command run on the server, named by the system account that ran it."""
        try:
            name = getpass.getuser()
        except Exception:  # no user name in a bare container
            name = "inconnu"
        return cls(f"cli:{name}")

    @classmethod
    def file_import(cls, filename: str, by: "Actor") -> "Actor":
        """An import of a file, by a person or a command: the name (chosen by whoever uploads it)
        is cut so that the label always ends with who imported it."""
        name = text_policy.clean(filename).strip()
        room = max(MAX_ACTOR - len(f"import: ({by.label})"), 12)
        if len(name) > room:
            name = name[:room - 1] + "…"
        return cls(f"import:{name} ({by.label})", by.user_id)

    @classmethod
    def system(cls, job: str) -> "Actor":
        """A scheduled job or the service itself."""
        return cls(f"système:{job}")


def _value(value):
    if isinstance(value, bool):  # shown to people: French words, not True/False
        return "oui" if value else "non"
    if value is None or isinstance(value, (int, float)):
        return value
    text = text_policy.clean(str(value))
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "…"


def diff(before: dict, after: dict) -> dict[str, list]:
    """Fields whose value differs, as {field: [before, after]}, in `after`'s order."""
    fields = list(after) + [k for k in before if k not in after]
    return {f: [_value(before.get(f)), _value(after.get(f))] for f in fields
            if before.get(f) != after.get(f)}


def record(db: Session, actor: Actor, *, entity: str, summary: str,
           changes: dict | None = None, departement_code: str | None = None) -> AuditEntry:
    """Add one audit row for a change made by `actor`."""
    changes = {field: [_value(before), _value(after)]
               for field, (before, after) in (changes or {}).items() if before != after}
    entry = AuditEntry(at=utcnow(), actor=text_policy.clean(actor.label)[:MAX_ACTOR],
                       actor_user_id=actor.user_id, departement_code=departement_code,
                       entity=entity, summary=text_policy.clean(summary)[:300],
                       changes=changes)
    db.add(entry)
    db.flush()
    return entry
