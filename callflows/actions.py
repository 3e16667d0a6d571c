"""Abstract actions returned by the engine; ivr/ turns them into TwiML, the simulator into text."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class CallState:
    """State between two webhooks; travels in the (signed) action URL."""

    step: str
    attempts: int = 0
    departement: str | None = None
    #: Thématique key chosen in the menu (tracking/motifs.yaml).
    thematique: str | None = None
    #: Index of the line rung by a sequential dial.
    line: int = 0
    #: Callback number typed by the caller (E.164), between its entry and its confirmation.
    #: Personal data: the edge seals it in the URL (ivr/state.py), it is never logged.
    number: str | None = None

    def to(self, step: str, **changes) -> "CallState":
        """The state at another step; attempts restart unless given."""
        return replace(self, step=step, attempts=changes.pop("attempts", 0), **changes)


@dataclass(frozen=True)
class Say:
    """Speak a prompt (or play its recording)."""

    prompt: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Gather:
    """Collect keypad digits, then post them with `result`; no input posts no digits."""

    result: CallState
    prompts: tuple[Say, ...]
    num_digits: int | None = None
    timeout: int = 5
    finish_on_key: str = "#"


@dataclass(frozen=True)
class Dial:
    """Ring lines (all at once, or the single one given) with a whisper on the referent side.

    The whisper's URL carries `result`: the département and thématique the referent hears."""

    result: CallState
    numbers: tuple[str, ...]
    timeout: int
    time_limit: int


@dataclass(frozen=True)
class Record:
    """Record a voicemail, then post its address with `result`."""

    result: CallState
    max_length: int


@dataclass(frozen=True)
class Hangup:
    """End the call."""


@dataclass
class Result:
    """What the engine asks for: actions in order, and facts to track on the call."""

    actions: list = field(default_factory=list)
    track: dict = field(default_factory=dict)
