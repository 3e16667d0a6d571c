"""A settable clock for tests, the browser server and screenshots: they say when "now" is."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


class Clock:
    """A settable clock: tests say when the call happens."""

    def __init__(self):
        self.now = datetime(2026, 12, 21, 10, 0, tzinfo=PARIS)  # a Monday, open in Paris

    def set(self, text_or_dt) -> None:
        self.now = (datetime.fromisoformat(text_or_dt) if isinstance(text_or_dt, str) else text_or_dt)
        if self.now.tzinfo is None:
            self.now = self.now.replace(tzinfo=PARIS)

    def __call__(self):
        return self.now
