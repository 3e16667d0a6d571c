"""The service-level clock: "taken into account within one working hour", in working time.

Pure (no database): working minutes are counted in the département's own opening hours, in its
timezone, without its public holidays (local ones included, unless worked there) and its
exceptional closures, with its exceptional openings — exactly the days and hours the phone
menu uses (`directory.schedule`). A ticket without a département (a national matter) counts in
NATIONAL_VIEW: Europe/Paris, Monday to Friday 09:00–17:00, without the national holidays.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from directory.schedule import SEARCH_DAYS, DepartementView, Slot, _day_intervals

#: The national team's working hours, for tickets that belong to no département.
NATIONAL_VIEW = DepartementView(
    code="", name="équipe nationale", timezone="Europe/Paris",
    slots=tuple(Slot(weekday, time(9, 0), time(17, 0)) for weekday in range(5)))

#: The commitment: one working hour.
DEFAULT_MINUTES = 60


def deadline(view: DepartementView | None, start: datetime,
             minutes: int = DEFAULT_MINUTES) -> datetime | None:
    """The instant (UTC) when `minutes` working minutes of `view` have elapsed since `start`.

    Time outside the opening intervals does not count: a ticket created at closing time is due
    `minutes` after the next opening. None when the département never opens within SEARCH_DAYS
    (no weekly slot and no exceptional opening).
    """
    if start.tzinfo is None:
        raise ValueError("deadline() needs a timezone-aware instant")
    if minutes < 0:
        raise ValueError("minutes must be positive")
    view = view or NATIONAL_VIEW
    tz = ZoneInfo(view.timezone)
    at = start.astimezone(UTC)
    remaining = timedelta(minutes=minutes)
    first_day = at.astimezone(tz).date()
    for offset in range(SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        for opens, closes in _day_intervals(view, day)[0]:
            # In UTC: an interval is measured in real minutes, even on a day the clocks change.
            begin = datetime.combine(day, opens, tz).astimezone(UTC)
            end = datetime.combine(day, closes, tz).astimezone(UTC)
            if end <= at:
                continue
            begin = max(begin, at)
            if end - begin >= remaining:
                return begin + remaining
            remaining -= end - begin
    return None

