"""Caller numbers are personal data: stored only as a keyed hash plus a masked form."""

from __future__ import annotations

import hashlib
import hmac

from core.text import clean

#: What Twilio sends as `From` when the caller hides their number.
HIDDEN_NUMBERS = {"", "anonymous", "unknown", "restricted", "private", "unavailable"}


def is_hidden(number: str | None) -> bool:
    """True when the caller's number is withheld."""
    return (number or "").strip().lower().lstrip("+") in HIDDEN_NUMBERS


def caller_hash(number: str | None, key: str) -> str | None:
    """Keyed HMAC-SHA256 of a caller number; None for a hidden number (no history to link)."""
    if is_hidden(number):
        return None
    return hmac.digest(key.encode(), number.strip().encode(), hashlib.sha256).hex()


#: A masked number never exceeds this length, whatever Twilio sends (a SIP address, say).
MASKED_MAX = 16


def mask_number(number: str | None) -> str:
    """Masked form for display and logs: '+33612345678' -> '+336••••••78'.

    At most MASKED_MAX characters: a long SIP address keeps its first 4 and last 2 characters.
    """
    if is_hidden(number):
        return "masqué"
    number = "".join(clean(number).split())  # stored and shown: only text XML can hold
    if len(number) <= 6:
        return "•" * len(number)
    return number[:4] + "•" * min(len(number) - 6, MASKED_MAX - 6) + number[-2:]
