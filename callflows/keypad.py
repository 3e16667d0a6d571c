"""Keypad entry of a département: keypads have no letters and codes have 2 or 3 digits."""

from __future__ import annotations

CORSICA = "corsica"
#: Digits typed after 20 on the Corsica question.
CORSICA_KEYS = {"1": "2A", "2": "2B"}
OVERSEAS = {"971", "972", "973", "974", "976"}


def parse_departement(digits: str | None) -> str | None:
    """Département code for what was typed, CORSICA for 20, None when invalid.

    Two digits for 01–95, three for 971–976; "201"/"202" type ahead the Corsica question;
    a leading zero on three digits is tolerated ("093" is 93, "020" is 20).
    """
    d = (digits or "").strip()
    if not (d.isascii() and d.isdigit()):  # "²" or "٣" pass isdigit() alone
        return None
    if len(d) == 3 and d.startswith("0"):
        d = d[1:]
    if d == "20":
        return CORSICA
    if d in ("201", "202"):
        return CORSICA_KEYS[d[2]]
    if len(d) == 2 and 1 <= int(d) <= 95:
        return d
    if d in OVERSEAS:
        return d
    return None
