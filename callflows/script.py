"""A scripted caller on the pure engine: what a caller would hear, without Twilio or a database.

Used by the web preview ("ce qu'entendront les appelants"). The same engine as real calls: the
caller types the keys given, one entry per question, and the referent side answers as told.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import prompts
from callflows import engine
from callflows.actions import Dial, Gather, Hangup, Record, Say
from callflows.definition import Flow
from callflows.keypad import CORSICA_KEYS

#: How the referent side behaves in a script, as Twilio would report it after <Dial>.
REFERENT_STATUS = {"accept": "completed", "no-answer": "no-answer", "busy": "busy"}
MAX_TURNS = 40


@dataclass(frozen=True)
class Line:
    """One thing that happens during the call, in order."""

    kind: str  # "say" | "gather" | "dial" | "record" | "input" | "end"
    text: str


@dataclass
class Script:
    """The call as it went: every line, and the facts the engine tracked (outcome…)."""

    lines: list[Line] = field(default_factory=list)
    track: dict = field(default_factory=dict)

    @property
    def dialled(self) -> list[str]:
        """Every number rung, in order."""
        return [line.text for line in self.lines if line.kind == "dial"]


def keys_for(code: str) -> list[str]:
    """The keypad entries that name a département: "93" → ["93"], "2A" → ["20", "1"]."""
    for key, corsica in CORSICA_KEYS.items():
        if corsica == code:
            return ["20", key]
    return [code]


def run(flow: Flow, ctx: engine.Context, keys: list[str | None], *, referent: str = "accept",
        voicemail_seconds: int = 0, speak=None) -> Script:
    """Play a call through the engine: `keys` answers each question in turn (None is silence,
    as are questions beyond the list). `speak(say)` gives what a Say action sounds like
    (default: the prompt file's text; the edge passes the admins' overrides)."""
    speak = speak or (lambda say: prompts.render(say.prompt, say.params))
    script = Script()
    pending = list(keys)
    result = engine.start(flow, ctx)
    for _ in range(MAX_TURNS):
        script.track.update(result.track)
        next_input = None
        for action in result.actions:
            if isinstance(action, Say):
                script.lines.append(Line("say", speak(action)))
            elif isinstance(action, Gather):
                for say in action.prompts:
                    script.lines.append(Line("say", speak(say)))
                digits = pending.pop(0) if pending else None
                script.lines.append(Line("input", f"touches : {digits}" if digits
                                         else "pas de saisie"))
                next_input = (action.result, engine.Input(digits=digits))
                break
            elif isinstance(action, Dial):
                for number in action.numbers:
                    script.lines.append(Line("dial", number))
                status = REFERENT_STATUS.get(referent, "no-answer")
                next_input = (action.result, engine.Input(
                    dial_status=status, dial_accepted=status == "completed"))
                break
            elif isinstance(action, Record):
                script.lines.append(Line("record", f"message de {voicemail_seconds} s"
                                         if voicemail_seconds else "aucun message"))
                next_input = (action.result, engine.Input(
                    recording_url="aperçu" if voicemail_seconds else None,
                    recording_seconds=voicemail_seconds))
                break
            elif isinstance(action, Hangup):
                script.lines.append(Line("end", "fin de l'appel"))
                return script
        if next_input is None:
            script.lines.append(Line("end", "fin de l'appel"))
            return script
        result = engine.resume(flow, next_input[0], next_input[1], ctx)
    raise RuntimeError("the call did not end within the script's turns")
