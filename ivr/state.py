"""CallState <-> URL query parameters. The signature covers the URL, so it cannot be forged."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from callflows.actions import CallState

_CODE = re.compile(r"^(0[1-9]|[1-8]\d|9[0-5]|2A|2B|97[1-46])$")
_STEP = re.compile(r"^[a-z_]{1,40}$")
_THEMATIQUE = re.compile(r"^[a-z_]{0,40}$")
_NUMBER = re.compile(r"^[0-9]{1,3}$")
#: Naive simulated instants are read in metropolitan time.
DEFAULT_TZ = ZoneInfo("Europe/Paris")


class BadState(ValueError):
    """The URL does not carry a valid call state (stale or tampered link)."""


def encode(state: CallState) -> dict[str, str]:
    """Query parameters for a state (short names: these URLs are signed on every request)."""
    params = {"s": state.step}
    if state.attempts:
        params["a"] = str(state.attempts)
    if state.departement:
        params["d"] = state.departement
    if state.thematique:
        params["m"] = state.thematique
    if state.line:
        params["l"] = str(state.line)
    return params


def decode(args) -> CallState:
    """The state carried by request.args; BadState when malformed."""
    step, attempts = args.get("s", ""), args.get("a", "0")
    dept, thematique, line = args.get("d") or None, args.get("m") or "", args.get("l", "0")
    if not _STEP.match(step) or not _NUMBER.match(attempts) or not _NUMBER.match(line):
        raise BadState(f"état d'appel illisible : {dict(args)!r}")
    if dept is not None and not _CODE.match(dept):
        raise BadState(f"département illisible dans l'URL : {dept!r}")
    if not _THEMATIQUE.match(thematique):
        raise BadState(f"thématique illisible dans l'URL : {thematique!r}")
    return CallState(step=step, attempts=min(int(attempts), 9), departement=dept,
                     thematique=thematique or None, line=min(int(line), 9))


def parse_instant(text: str) -> datetime:
    """ISO instant; a naive one is read in Europe/Paris."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo else value.replace(tzinfo=DEFAULT_TZ)
