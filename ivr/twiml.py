"""Turn engine actions into TwiML with the official twilio library."""

from __future__ import annotations

from typing import Callable

from twilio.twiml.voice_response import Gather as TwGather
from twilio.twiml.voice_response import VoiceResponse

import prompts
from core import text as text_policy
from callflows.actions import Dial, Gather, Hangup, Record, Say
from prompts import overrides as prompt_overrides
from prompts.overrides import Overrides


#: Rendered documents by (renderer context, admins' overrides, actions); emptied when full. Most
#: calls begin with one of a few hundred documents (the welcome, per returning département), and
#: building one with the library costs more than the rest of the incoming-call step. The
#: overrides' fingerprint is in the key: an edit is heard at once, in any app of the process.
_MEMO: dict[tuple, str] = {}
_MEMO_SIZE = 2048


def forget_rendered() -> None:
    """Empty the memo (when recordings change; like `prompts.audio_file`, read once per process)."""
    _MEMO.clear()


def _personal(action) -> bool:
    """True for an action carrying a callback number: never kept in the memo (it is personal
    data, and one call's)."""
    if isinstance(action, Gather):
        return action.result.number is not None or any(_personal(say) for say in action.prompts)
    return isinstance(action, Say) and "numero" in action.params


class Renderer:
    """Renders actions; `url` builds the absolute URL of a step result or other endpoint.

    `context` names everything `url` depends on besides its arguments (public base URL,
    simulated time…); when given, documents without <Dial> posting to `ivr.step` are memoized.
    Dial verbs carry per-call whisper URLs and are always rendered afresh.

    `overrides`: the admins' texts and recordings; by default those of the app's current
    directory version (prompts/overrides.py), read when the document is rendered.
    """

    def __init__(self, *, url: Callable[..., str], voice: str, language: str,
                 caller_id: str | None = None, context: tuple | None = None,
                 overrides: Overrides | None = None):
        self.url, self.voice, self.language, self.caller_id = url, voice, language, caller_id
        self.context = None if context is None else (*context, voice, language, caller_id)
        self.overrides = overrides

    def _say(self, parent, action: Say, overrides: Overrides) -> None:
        # Most specific first: the département's override, the national one (a recording wins
        # over the text of its level), then the shipped recording, then fr.yaml.
        text, audio = overrides.resolve(action.prompt, action.params.get("departement"))
        if text is None and audio is None:
            audio = prompts.audio_file(action.prompt)
        if audio:
            parent.play(self.url("audio", name=audio))
        else:
            parent.say(prompts.render(action.prompt, action.params, template=text),
                       voice=self.voice, language=self.language)

    def response(self, actions: list, *, result_endpoint: str = "ivr.step") -> str:
        """The TwiML document for a list of actions."""
        overrides = self.overrides if self.overrides is not None else prompt_overrides.current()
        if (self.context is None or result_endpoint != "ivr.step"
                or any(isinstance(action, Dial) or _personal(action) for action in actions)):
            return self._render(actions, result_endpoint, overrides)
        key = (self.context, overrides.fingerprint, repr(actions))
        document = _MEMO.get(key)
        if document is None:
            if len(_MEMO) >= _MEMO_SIZE:
                _MEMO.clear()
            document = _MEMO[key] = self._render(actions, result_endpoint, overrides)
        return document

    def _render(self, actions: list, result_endpoint: str, overrides: Overrides) -> str:
        resp = VoiceResponse()
        for action in actions:
            if isinstance(action, Say):
                self._say(resp, action, overrides)
            elif isinstance(action, Gather):
                target = self.url(result_endpoint, state=action.result)
                gather = TwGather(action=target, method="POST", timeout=action.timeout,
                                  finish_on_key=action.finish_on_key,
                                  num_digits=action.num_digits, input="dtmf")
                for say in action.prompts:
                    self._say(gather, say, overrides)
                resp.append(gather)
                # No input: Twilio falls through to the next verb, which posts no digits.
                resp.redirect(target, method="POST")
            elif isinstance(action, Dial):
                self._dial(resp, action)
            elif isinstance(action, Record):
                target = self.url(result_endpoint, state=action.result)
                resp.record(action=target, method="POST", max_length=action.max_length,
                            play_beep=True, finish_on_key="#", timeout=5, trim="trim-silence")
                # An empty recording: Twilio skips the action URL and runs the next verb.
                resp.redirect(target, method="POST")
            elif isinstance(action, Hangup):
                resp.hangup()
            else:
                raise TypeError(f"unknown action {action!r}")
        # Directory text stored before the text policy must not make the document unreadable:
        # the library escapes markup but keeps characters XML 1.0 forbids.
        return text_policy.clean(str(resp))

    def _dial(self, resp: VoiceResponse, action: Dial) -> None:
        dial = resp.dial(action=self.url("ivr.step", state=action.result), method="POST",
                         timeout=action.timeout, time_limit=action.time_limit,
                         caller_id=self.caller_id or None, answer_on_bridge=True)
        whisper_state = action.result
        for number in action.numbers:
            dial.number(number, url=self.url("ivr.whisper", state=whisper_state), method="POST",
                        status_callback=self.url("ivr.leg_status", state=whisper_state),
                        status_callback_event="initiated ringing answered completed",
                        status_callback_method="POST")


def apology(renderer: Renderer, form: str) -> str:
    """TwiML for any failure: a spoken apology pointing to the web form, then hang up."""
    return renderer.response([Say("technical_error", {"formulaire": form}), Hangup()])

