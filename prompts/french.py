"""Natural French for hours, days and instants, as spoken to callers."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import phonenumbers

DAYS = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
MONTHS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
          "septembre", "octobre", "novembre", "décembre"]


def hour(t: time) -> str:
    """09:30 -> '9 heures 30', 14:00 -> '14 heures', 12:00 -> 'midi'."""
    if t.hour == 12 and t.minute == 0:
        return "midi"
    return f"{t.hour} heures" + (f" {t.minute:02d}" if t.minute else "")


def _ranges(intervals: tuple[tuple[time, time], ...]) -> str:
    parts = [f"de {hour(a)} à {hour(b)}" for a, b in intervals]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " et " + parts[-1]


def weekly_hours(slots) -> str:
    """'du lundi au vendredi, de 9 heures 30 à 11 heures 30 et de 14 heures à 16 heures 30'.

    Consecutive days with the same hours are grouped.
    """
    by_day: dict[int, tuple] = {}
    for s in sorted(slots, key=lambda s: (s.weekday, s.start)):
        by_day.setdefault(s.weekday, ())
        by_day[s.weekday] += ((s.start, s.end),)
    groups: list[tuple[int, int, tuple]] = []
    for day in sorted(by_day):
        if groups and groups[-1][1] == day - 1 and groups[-1][2] == by_day[day]:
            groups[-1] = (groups[-1][0], day, by_day[day])
        else:
            groups.append((day, day, by_day[day]))
    if not groups:
        return "à aucun moment de la semaine"
    phrases = []
    for first, last, intervals in groups:
        if first == last:
            days = f"le {DAYS[first]}"
        elif last == first + 1:
            days = f"le {DAYS[first]} et le {DAYS[last]}"
        else:
            days = f"du {DAYS[first]} au {DAYS[last]}"
        phrases.append(f"{days}, {_ranges(intervals)}")
    return "; ".join(phrases)


def instant(when: datetime, now: datetime, timezone: str) -> str:
    """When something happens, relative to now, in the département's local time.

    'aujourd'hui à 14 heures', 'demain à 9 heures 30', 'lundi 28 décembre à 9 heures 30'.
    """
    tz = ZoneInfo(timezone)
    local, today = when.astimezone(tz), now.astimezone(tz).date()
    at = f"à {hour(local.time())}"
    delta = (local.date() - today).days
    if delta == 0:
        return f"aujourd'hui {at}"
    if delta == 1:
        return f"demain {at}"
    day = "1er" if local.day == 1 else str(local.day)
    date_text = f"{DAYS[local.weekday()]} {day} {MONTHS[local.month - 1]}"
    if local.year != today.year:
        date_text += f" {local.year}"
    return f"{date_text} {at}"


def spoken_address(url: str | None) -> str:
    """A web address as a caller can note it: no scheme, no trailing slash."""
    text = (url or "").strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.rstrip("/")


#: Country codes of the French numbering plan: their numbers are read as dialled in France.
_FRENCH_CODES = {33, 262, 590, 594, 596}


def phone_number(e164: str) -> str:
    """A phone number read back to a caller digit pair by digit pair, as French speakers say
    them: '+33612345678' -> 'zéro 6, 12, 34, 56, 78'; abroad: 'plus 44, 20, 79, 46, 00, 00'."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return " ".join(e164)
    national = phonenumbers.national_significant_number(parsed)
    if parsed.country_code in _FRENCH_CODES:
        digits, prefix = "0" + national, ""
    else:
        digits, prefix = national, f"plus {parsed.country_code}, "
    # An odd count: the first group has one digit ("plus 1, 2, 12, …").
    pairs = [digits[:len(digits) % 2]] if len(digits) % 2 else []
    pairs += [digits[i:i + 2] for i in range(len(digits) % 2, len(digits), 2)]
    spoken = [" ".join("zéro" if d == "0" else d for d in p) if p.startswith("0") else p
              for p in pairs]
    return prefix + ", ".join(spoken)
