"""Facts about the 101 départements that do not change: name, timezone, phone region, holidays."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_CSV = Path(__file__).with_name("departements.csv")

#: Overseas départements: (timezone, phonenumbers region, holidays.France subdivision).
_OVERSEAS = {
    "971": ("America/Guadeloupe", "GP", "971"),
    "972": ("America/Martinique", "MQ", "972"),
    "973": ("America/Cayenne", "GF", "973"),
    "974": ("Indian/Reunion", "RE", "974"),
    "976": ("Indian/Mayotte", "YT", "976"),
}
#: Alsace-Moselle keeps Vendredi saint and Saint-Étienne; `holidays` names Alsace "6AE".
_LOCAL_SUBDIV = {"57": "57", "67": "6AE", "68": "6AE"}


@dataclass(frozen=True)
class Territory:
    """What the law and the phone plan say about one département."""

    code: str
    name: str
    timezone: str
    phone_region: str
    holiday_subdiv: str | None


@lru_cache(maxsize=1)
def territories() -> dict[str, Territory]:
    """All 101 départements, keyed by code, in the official order."""
    result: dict[str, Territory] = {}
    with _CSV.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            code = row["code"]
            tz, region, subdiv = _OVERSEAS.get(code, ("Europe/Paris", "FR", _LOCAL_SUBDIV.get(code)))
            result[code] = Territory(code, row["nom"], tz, region, subdiv)
    return result


def official_order(items, code=lambda item: item) -> list:
    """`items` sorted in the official order of départements (01, 02 … 2A, 2B … 976)."""
    rank = {c: i for i, c in enumerate(territories())}
    return sorted(items, key=lambda item: rank.get(code(item), len(rank)))
