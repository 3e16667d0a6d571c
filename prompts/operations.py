"""Admins' overrides of the prompts: texts and recordings, nationally or per département.

Every change is validated here (known prompt, text policy, exactly the default placeholders,
recordings checked by their content) and audited by the operation itself. Flush-only: the edge
commits. Recordings are written under the folder the edge gives (instance/prompts/) with a
random name; the file a change makes obsolete is returned, for the edge to delete once committed.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

import prompts
from audit.operations import Actor, record
from core import text as text_policy
from directory.models import Departement
from prompts.models import PromptOverride

#: Largest recording accepted (a prompt lasts seconds; Twilio fetches it during the call).
MAX_AUDIO_BYTES = 5 * 1024 * 1024
#: Longest text accepted, in characters (the longest default prompt is about 250).
MAX_TEXT = 1000
#: Names of stored recordings: ours only, so a URL can name nothing else.
STORED_AUDIO = re.compile(r"[0-9a-f]{32}\.(mp3|wav)")


class OverrideError(ValueError):
    """A refused change; the message is French and says what to fix."""


@dataclass(frozen=True)
class PromptInfo:
    """One prompt as the admin pages list it."""

    name: str
    description: str
    default: str
    placeholders: tuple[str, ...]
    national_text: str | None
    national_audio: str | None
    #: Départements with a text of their own, and with a recording of their own.
    departement_texts: tuple[str, ...]
    departement_audios: tuple[str, ...]

    @property
    def text(self) -> str:
        """The text heard nationally."""
        return self.national_text or self.default


def known_name(name: str) -> str:
    """`name` if it names a prompt, else OverrideError."""
    if name not in prompts.catalogue():
        raise OverrideError(f"message inconnu : « {name} »")
    return name


def ordered_placeholders(template: str) -> tuple[str, ...]:
    """Placeholders of a (valid) text, in order of first appearance."""
    seen: dict[str, None] = {}
    for _, field, _, _ in string.Formatter().parse(template):
        if field:
            seen.setdefault(field, None)
    return tuple(seen)


def _braces(names) -> str:
    return ", ".join("{" + n + "}" for n in names)


def check_text(name: str, text: str) -> str:
    """The text as stored (whitespace folded) if it may replace prompt `name`, else OverrideError:
    forbidden characters, empty, too long, malformed braces, or placeholders that are not exactly
    those of the default text (each missing or unknown one is named)."""
    known_name(name)
    try:
        value = " ".join(text_policy.check(text or "", f"Message « {name} »").split())
    except text_policy.TextRefused as exc:
        raise OverrideError(str(exc)) from None
    if not value:
        raise OverrideError("Le texte est vide : saisissez la phrase à lire, ou rétablissez "
                            "le texte d'origine.")
    if len(value) > MAX_TEXT:
        raise OverrideError(f"Le texte dépasse {MAX_TEXT} caractères ({len(value)}).")
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError:
        raise OverrideError("Accolades mal formées : chaque valeur s'écrit entre « { » et « } », "
                            "par exemple {horaires}.") from None
    used: set[str] = set()
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise OverrideError(f"Accolades mal formées : « {{{field}{'!' + conversion if conversion else ''}"
                                f"{':' + spec if spec else ''}}} » n'est pas une valeur ; "
                                "une valeur s'écrit comme {horaires}.")
        used.add(field)
    expected = prompts.placeholders(name)
    missing = [p for p in ordered_placeholders(prompts.text(name)) if p not in used]
    unknown = sorted(used - expected)
    problems = []
    if missing:
        problems.append(f"{'Valeurs manquantes' if len(missing) > 1 else 'Valeur manquante'} : "
                        f"{_braces(missing)} (le texte d'origine la lit à l'appelant, "
                        "gardez-la telle quelle).")
    if unknown:
        allowed = (f"valeurs possibles : {_braces(ordered_placeholders(prompts.text(name)))}"
                   if expected else "ce message n'a aucune valeur")
        problems.append(f"{'Valeurs inconnues' if len(unknown) > 1 else 'Valeur inconnue'} : "
                        f"{_braces(unknown)} ({allowed}).")
    if problems:
        raise OverrideError(" ".join(problems))
    return value


def _departement(db: Session, code: str | None) -> str | None:
    if not code:
        return None
    dept = db.get(Departement, code.strip().upper())
    if dept is None:
        raise OverrideError(f"département inconnu : « {code} »")
    return dept.code


def _row(db: Session, name: str, code: str | None) -> PromptOverride | None:
    where = (PromptOverride.departement_code.is_(None) if code is None
             else PromptOverride.departement_code == code)
    return db.scalars(select(PromptOverride).where(PromptOverride.name == name, where)).one_or_none()


def inherited_text(db: Session, name: str, code: str | None) -> str:
    """The text heard at this level without its own text: the national one for a département,
    else the default."""
    if code is not None:
        national = _row(db, name, None)
        if national is not None and national.text is not None:
            return national.text
    return prompts.text(name)


def level(db: Session, name: str, code: str | None = None) -> PromptOverride | None:
    """The override of `name` at one level (national when `code` is None), if any."""
    return _row(db, known_name(name), _departement(db, code))


def _scope(code: str | None) -> str:
    return f"département {code}" if code else "national"


def _save(db: Session, row: PromptOverride | None, name: str, code: str | None,
          **values) -> None:
    """Create, update or delete the level's row: a row replacing nothing is deleted."""
    if row is None:
        row = PromptOverride(name=name, departement_code=code)
        db.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    if row.text is None and row.audio is None:
        if row in db.new:
            db.expunge(row)
        else:
            db.delete(row)
    db.flush()


def set_text(db: Session, actor: Actor, name: str, text: str,
             departement_code: str | None = None) -> bool:
    """Replace the text of prompt `name`, nationally or for one département; True if it changed.

    The same text as the one inherited (default, or national for a département) removes the
    level's own text: the level follows the other one again."""
    value = check_text(name, text)
    code = _departement(db, departement_code)
    row = _row(db, name, code)
    inherited = inherited_text(db, name, code)
    before = row.text if row is not None else None
    after = None if value == inherited else value
    if before == after:
        return False
    _save(db, row, name, code, text=after)
    record(db, actor, entity="message", departement_code=code,
           summary=f"Message « {name} » : texte modifié ({_scope(code)})",
           changes={"texte": [before or inherited, after or inherited]})
    return True


def restore_text(db: Session, actor: Actor, name: str,
                 departement_code: str | None = None) -> bool:
    """Remove the level's own text (« Rétablir le texte d'origine »); True if there was one."""
    return _clear(db, actor, name, departement_code, "text", "texte d'origine rétabli") is not None


def _clear(db: Session, actor: Actor, name: str, departement_code: str | None, column: str,
           what: str) -> str | None:
    """Empty the level's text or audio, audited; the value it held (None: nothing to do)."""
    known_name(name)
    code = _departement(db, departement_code)
    row = _row(db, name, code)
    before = getattr(row, column) if row is not None else None
    if before is None:
        return None
    _save(db, row, name, code, **{column: None})
    change = (["texte", inherited_text(db, name, code)] if column == "text"
              else ["enregistrement", None])
    record(db, actor, entity="message", departement_code=code,
           summary=f"Message « {name} » : {what} ({_scope(code)})",
           changes={change[0]: [before, change[1]]})
    return before


def audio_kind(data: bytes) -> str | None:
    """"mp3" or "wav" when the bytes are such a recording (by content, not by name), else None."""
    if len(data) >= 44 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size_bytes = data[6:10]
        if data[3] not in (2, 3, 4) or any(b >= 0x80 for b in size_bytes):
            return None
        size = 0
        for b in size_bytes:  # "syncsafe": 7 bits per byte
            size = (size << 7) | b
        start = 10 + size + (10 if data[5] & 0x10 else 0)
        while start < len(data) and data[start] == 0:  # padding some encoders leave after the tag
            start += 1
    return "mp3" if _mp3_frame(data, start) else None


def _mp3_frame(data: bytes, at: int) -> bool:
    """A valid MPEG audio frame header at `at`: sync, version, layer, bitrate and rate indexes."""
    if len(data) < at + 4:
        return False
    b1, b2 = data[at + 1], data[at + 2]
    return (data[at] == 0xFF and b1 & 0xE0 == 0xE0 and (b1 >> 3) & 3 != 1 and (b1 >> 1) & 3 != 0
            and b2 >> 4 not in (0, 15) and (b2 >> 2) & 3 != 3)


def check_audio(data: bytes) -> str:
    """The recording's type ("mp3" or "wav") if it may be played, else OverrideError."""
    if not data:
        raise OverrideError("Le fichier est vide.")
    if len(data) > MAX_AUDIO_BYTES:
        raise OverrideError(f"Le fichier dépasse {MAX_AUDIO_BYTES // (1024 * 1024)} Mo.")
    kind = audio_kind(data)
    if kind is None:
        raise OverrideError("Ce fichier n'est pas un enregistrement MP3 ou WAV (son contenu a "
                            "été vérifié, pas seulement son nom).")
    return kind


def audio_folder(instance_path: str) -> Path:
    """Where uploaded recordings are kept: instance/prompts/."""
    return Path(instance_path) / "prompts"


def stored_audio(folder: Path, filename: str) -> Path | None:
    """The stored recording a name designates, or None (only names of ours, in `folder`)."""
    if not STORED_AUDIO.fullmatch(filename or ""):
        return None
    path = folder / filename
    return path if path.is_file() else None


def delete_audio_file(folder: Path, filename: str | None) -> None:
    """Delete a stored recording no override uses any more (after the commit)."""
    if filename and STORED_AUDIO.fullmatch(filename):
        (folder / filename).unlink(missing_ok=True)


def _audio_label(filename: str | None, original: str = "", size: int | None = None) -> str | None:
    if filename is None:
        return None
    detail = f"{original}, " if original else ""
    return f"{filename} ({detail}{size // 1024} Ko)" if size is not None else filename


def set_audio(db: Session, actor: Actor, name: str, data: bytes, folder: Path,
              departement_code: str | None = None, original_name: str = "") -> str | None:
    """Play a recording instead of the level's speech; returns the recording it replaces (to
    delete once committed). The file is written under `folder` with a random name."""
    known_name(name)
    code = _departement(db, departement_code)
    kind = check_audio(data)
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{secrets.token_hex(16)}.{kind}"
    (folder / filename).write_bytes(data)
    row = _row(db, name, code)
    before = row.audio if row is not None else None
    _save(db, row, name, code, audio=filename)
    original = " ".join(text_policy.clean(Path(original_name.replace("\\", "/")).name).split())[:100]
    record(db, actor, entity="message", departement_code=code,
           summary=f"Message « {name} » : enregistrement ajouté ({_scope(code)})",
           changes={"enregistrement": [before, _audio_label(filename, original, len(data))]})
    return before


def remove_audio(db: Session, actor: Actor, name: str,
                 departement_code: str | None = None) -> str | None:
    """Stop playing the level's recording (its text is spoken again); returns the file to
    delete once committed, None when there was no recording."""
    return _clear(db, actor, name, departement_code, "audio", "enregistrement supprimé")


def overview(db: Session) -> list[PromptInfo]:
    """Every prompt, in fr.yaml's order, with its overrides (one query)."""
    rows = db.scalars(select(PromptOverride)).all()
    national = {r.name: r for r in rows if r.departement_code is None}
    texts: dict[str, list[str]] = {}
    audios: dict[str, list[str]] = {}
    for r in rows:
        if r.departement_code is not None:
            if r.text is not None:
                texts.setdefault(r.name, []).append(r.departement_code)
            if r.audio is not None:
                audios.setdefault(r.name, []).append(r.departement_code)
    descriptions = prompts.descriptions()["prompts"]
    result = []
    for name, default in prompts.catalogue().items():
        own = national.get(name)
        result.append(PromptInfo(
            name=name, description=descriptions.get(name, ""), default=default,
            placeholders=ordered_placeholders(default),
            national_text=own.text if own else None, national_audio=own.audio if own else None,
            departement_texts=tuple(sorted(texts.get(name, []))),
            departement_audios=tuple(sorted(audios.get(name, [])))))
    return result
