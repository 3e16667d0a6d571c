"""The one text policy: what text may be stored, and how every writer stays safe.

Everything the service stores ends up in XML sooner or later: TwiML read to callers, XLSX
workbooks, emails. XML 1.0 can never hold C0 control characters other than tab, line feed and
carriage return, lone surrogates, or U+FFFE/U+FFFF; a single one makes the whole document
unreadable (Twilio plays its error message, Excel refuses the file). Entry points refuse such
text with `check` (naming the place), which also stores line breaks as LF alone (web text areas
send CRLF, and a workbook gives a CR back as LF: a round trip must not see a change); writers
pass text through `clean`, so text stored before this policy, or by another way, cannot break
them either.
"""

from __future__ import annotations

import re

#: Characters refused in any text a person or a file gives us: what XML 1.0 forbids (C0 controls
#: but tab/LF/CR, surrogates, U+FFFE/U+FFFF), plus DEL, the C1 controls and the Unicode
#: non-characters, which no person types and which some readers refuse.
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    "\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff\U0004fffe\U0004ffff"
    "\U0005fffe\U0005ffff\U0006fffe\U0006ffff\U0007fffe\U0007ffff\U0008fffe\U0008ffff"
    "\U0009fffe\U0009ffff\U000afffe\U000affff\U000bfffe\U000bffff\U000cfffe\U000cffff"
    "\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff\U0010fffe\U0010ffff]")


class TextRefused(ValueError):
    """Text holding a forbidden character; the message is French and names the place."""


def forbidden(text: str) -> str | None:
    """The first forbidden character of `text`, or None when the text is acceptable."""
    match = _FORBIDDEN.search(text)
    return match.group() if match else None


def describe(char: str) -> str:
    """How a forbidden character is named to a person: its code point (it is invisible)."""
    return f"U+{ord(char):04X}"


def newlines(text: str) -> str:
    """`text` with every line break (CRLF, CR) as LF, as it is stored."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def check(text: str, where: str) -> str:
    """`text` as stored (line breaks as LF) if acceptable, else TextRefused naming `where` and
    the character."""
    char = forbidden(text)
    if char is not None:
        raise TextRefused(f"{where} : caractère invisible ou interdit ({describe(char)})")
    return newlines(text)


def clean(text: str) -> str:
    """`text` without any forbidden character: what every writer (TwiML, XLSX, CSV, email) emits."""
    return _FORBIDDEN.sub("", text) if _FORBIDDEN.search(text) else text

