"""The pure call-flow engine: (flow, state, input, context) -> actions + facts to track.

No Flask, no Twilio, no database: the context carries a snapshot of what the flow needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from callflows.actions import CallState, Dial, Gather, Hangup, Record, Result, Say
from callflows.definition import Flow
from callflows.keypad import CORSICA, CORSICA_KEYS, parse_callback_number, parse_departement
from directory.limits import MAX_LINES
from directory.reference import territories
from directory.schedule import ClosedReason, DepartementView, State, availability
from prompts import french


def no_announcements(code: str | None) -> tuple[str, ...]:
    """No message to announce (the default of a context)."""
    return ()


@dataclass(frozen=True)
class Context:
    """What the edge knows when a webhook arrives."""

    now: datetime
    #: Directory lookup by code (a snapshot per call; None for an unknown code).
    directory: Callable[[str], DepartementView | None]
    #: Département of the caller's previous call, when recent and the number is not hidden.
    last_departement: str | None = None
    form_url: str = ""
    time_limit: int = 900
    voicemail_max_seconds: int = 120
    #: The number the caller calls from when it can be called back (E.164, see
    #: `keypad.callable_caller`); None for a hidden number: no callback to it is offered.
    caller_number: str | None = None
    #: The national team's messages (incidents) announced now to callers of a département.
    announcements: Callable[[str | None], tuple[str, ...]] = no_announcements


@dataclass(frozen=True)
class Input:
    """What Twilio posted for the step's verb."""

    digits: str | None = None
    dial_status: str | None = None
    #: The referent pressed the whisper's accept key on the leg that Twilio reports.
    dial_accepted: bool = False
    recording_url: str | None = None
    recording_seconds: int | None = None


class _Run:
    """One engine invocation: accumulates actions and tracked facts."""

    def __init__(self, flow: Flow, ctx: Context):
        self.flow, self.ctx, self.out = flow, ctx, Result()
        self._views: dict[str, DepartementView | None] = {}
        self._params: dict[tuple, dict] = {}

    # -- helpers ---------------------------------------------------------------------------
    def view(self, code: str | None) -> DepartementView | None:
        if not code:
            return None
        if code not in self._views:
            self._views[code] = self.ctx.directory(code)
        return self._views[code]

    def params(self, state: CallState, **extra) -> dict:
        key = (state.departement, state.thematique)
        params = self._params.get(key)
        if params is None:
            view = self.view(state.departement)
            form = (view.form_url if view and view.form_url else None) or self.ctx.form_url
            params = self._params[key] = {
                "departement": view.code if view else "", "nom": view.name if view else "",
                "formulaire": french.spoken_address(form),
                "courriel": (view.email if view else None) or "",
                "motif": self.thematique_label(state.thematique)}
        return {**params, **extra}

    def thematique_label(self, thematique: str | None) -> str:
        return (self.flow.thematique_labels.get(thematique, "non précisé") if thematique
                else "non précisé")

    def say(self, prompt: str, state: CallState, **extra) -> Say:
        return Say(prompt, self.params(state, **extra))

    def track(self, **facts) -> None:
        self.out.track.update(facts)

    def holds(self, condition: str | None, state: CallState) -> bool:
        """Whether a prompt or option marked `when: condition` applies (definition.CONDITIONS,
        or a placeholder that has a value, such as `courriel`)."""
        if condition is None:
            return True
        if condition == "caller_number":
            return self.ctx.caller_number is not None
        if condition == "hidden_caller":
            return self.ctx.caller_number is None
        if condition == "voicemail":
            view = self.view(state.departement)
            return bool(view and view.voicemail_enabled)
        return bool(self.params(state).get(condition))

    def prompt_list(self, entries, state: CallState) -> list[Say]:
        """The prompts of a list (names, or {prompt, when}) that apply."""
        out = []
        for entry in entries:
            name, when = (entry["prompt"], entry.get("when")) if isinstance(entry, dict) else (entry, None)
            if self.holds(when, state):
                out.append(self.say(name, state))
        return out

    def max_attempts(self, step: dict) -> int:
        return step.get("max_attempts", self.flow.max_attempts)

    def emit(self, *actions) -> None:
        self.out.actions.extend(actions)

    # -- running ---------------------------------------------------------------------------
    def enter_chain(self, state: CallState | None) -> Result:
        """Enter steps until one waits for the caller (gather, dial, record) or hangs up."""
        guard = 0
        while state is not None:
            guard += 1
            if guard > 50:  # a definition loop that never waits: fail loudly, not forever
                raise RuntimeError(f"flow loops without waiting at step {state.step}")
            step = self.flow.step(state.step)
            self.track(step=state.step, departement=state.departement, thematique=state.thematique)
            state = getattr(self, f"enter_{step['type']}")(step, state)
        return self.out

    def retry_or_fail(self, step: dict, state: CallState, problem: str, on_failure: str):
        """Re-prompt after a wrong or missing entry, or give up after max attempts."""
        attempts = state.attempts + 1
        if attempts >= self.max_attempts(step):  # a typed number is never carried further
            return state.to(on_failure, departement=state.departement, number=None)
        self.emit(self.say(problem, state))
        return getattr(self, f"enter_{step['type']}")(step, state.to(state.step, attempts=attempts))

    # -- say ---------------------------------------------------------------------------------
    def enter_say(self, step, state):
        self.emit(*self.prompt_list(step["prompts"], state))
        if step.get("outcome"):
            self.track(outcome=step["outcome"])
        if step.get("hangup"):
            self.emit(Hangup())
            return None
        return state.to(step["next"])

    # -- returning caller ------------------------------------------------------------------
    def enter_returning_caller(self, step, state):
        last = self.ctx.last_departement
        if not last or self.view(last) is None:
            return state.to(step["next"])
        offered = state.to(state.step, departement=last)
        self.emit(Gather(offered, (self.say(step["prompt"], offered),), timeout=6))
        return None

    def result_returning_caller(self, step, state, inp):
        if not inp.digits:
            return state.to(step["next"], departement=None)
        if inp.digits == step["accept_key"]:
            return state.to(step["on_accept"])
        # Anything else is read as a département typed straight away.
        ask = state.to(step["next"], departement=None)
        return self._departement_entered(self.flow.step(step["next"]), ask, inp.digits,
                                         step["on_other"])

    # -- département -----------------------------------------------------------------------
    def enter_ask_departement(self, step, state):
        self.emit(Gather(state, (self.say(step["prompt"], state),), timeout=5))
        return None

    def result_ask_departement(self, step, state, inp):
        if not inp.digits:
            return self.retry_or_fail(step, state, "no_input", step["on_failure"])
        return self._departement_entered(step, state, inp.digits, step["on_valid"])

    def _departement_entered(self, step, state, digits, on_valid):
        code = parse_departement(digits)
        if code == CORSICA:
            return state.to(step["on_corsica"])
        if code is None or self.view(code) is None:
            return self.retry_or_fail(step, state, "invalid_departement", step["on_failure"])
        return state.to(on_valid, departement=code)

    def enter_ask_corsica(self, step, state):
        self.emit(Gather(state, (self.say(step["prompt"], state),), num_digits=1, timeout=5))
        return None

    def result_ask_corsica(self, step, state, inp):
        code = CORSICA_KEYS.get(inp.digits or "")
        if code is None or self.view(code) is None:
            problem = "no_input" if not inp.digits else "invalid_choice"
            return self.retry_or_fail(step, state, problem, step["on_failure"])
        return state.to(step["on_valid"], departement=code)

    # -- menu --------------------------------------------------------------------------------
    def options(self, step, state) -> dict:
        """The options of a menu offered to this caller (`when`: a hidden caller is not offered
        a callback to their own number, a département without voicemail no message)."""
        return {key: option for key, option in step["options"].items()
                if self.holds(option.get("when"), state)}

    def enter_menu(self, step, state):
        prompts = [self.say(p, state) for p in ([step["prompt"]] if "prompt" in step else [])]
        prompts += self.prompt_list(step.get("prompts", []), state)
        prompts += [self.say(o["prompt"], state) for o in self.options(step, state).values()
                    if "prompt" in o]
        self.emit(Gather(state, tuple(prompts), num_digits=1, timeout=5))
        return None

    def result_menu(self, step, state, inp):
        if not inp.digits:
            return state.to(step["on_timeout"])
        option = self.options(step, state).get(inp.digits[:1])
        if option is None:
            return self.retry_or_fail(step, state, "invalid_choice", step["on_failure"])
        changes = {}
        if "thematique" in option:
            changes["thematique"] = option["thematique"]
        if option.get("reset_departement"):
            changes["departement"] = None
        return state.to(option["next"], **changes)

    # -- announcements -----------------------------------------------------------------------
    def enter_announce(self, step, state):
        """The national team's messages for this département (or all), then on."""
        for message in self.ctx.announcements(state.departement):
            self.emit(self.say(step["prompt"], state, message=message))
        return state.to(step["next"])

    # -- routing -----------------------------------------------------------------------------
    def enter_route(self, step, state):
        view = self.view(state.departement)
        avail = availability(view, self.ctx.now)
        if avail.state is State.no_phone_assistance:
            return state.to(step["on_no_phone_assistance"])
        if avail.state is State.closed:
            return state.to(step["on_closed"])
        return state.to(step["on_open"])

    def enter_closed(self, step, state):
        view = self.view(state.departement)
        avail = availability(view, self.ctx.now)
        prompt = {ClosedReason.holiday: "closed_holiday",
                  ClosedReason.closure: "closed_closure"}.get(avail.reason, "closed_hours")
        self.emit(self.say(prompt, state, ferie=avail.holiday_name or "",
                           motif_fermeture=avail.closure_reason or ""))
        if view.slots:
            self.emit(self.say("opening_hours", state, horaires=french.weekly_hours(view.slots)))
        if avail.next_opening:
            self.emit(self.say("reopens", state, reouverture=french.instant(
                avail.next_opening, self.ctx.now, view.timezone)))
        self.track(outcome="out_of_hours", closed_reason=avail.reason.name)
        return state.to(step["next"])

    # -- dial --------------------------------------------------------------------------------
    def enter_dial(self, step, state):
        view = self.view(state.departement)
        lines = [line.number for line in view.lines]
        if state.line >= len(lines):
            return state.to(step["on_no_answer"])
        if state.line == 0 and "prompt" in step:
            self.emit(self.say(step["prompt"], state))
        if view.ring_strategy == "sequential":
            numbers = (lines[state.line],)
        else:
            numbers = tuple(lines[:MAX_LINES])  # Twilio rings at most this many at once
        self.emit(Dial(state, numbers, timeout=view.ring_timeout, time_limit=self.ctx.time_limit))
        self.track(dialing=True)
        return None

    def result_dial(self, step, state, inp):
        if inp.dial_accepted and inp.dial_status == "completed":
            self.track(outcome="answered")
            self.emit(Hangup())
            return None
        if inp.dial_status == "canceled":  # the caller hung up while it rang
            self.track(outcome="hung_up_ringing")
            self.emit(Hangup())
            return None
        view = self.view(state.departement)
        if view.ring_strategy == "sequential" and state.line + 1 < len(view.lines):
            return state.to(state.step, line=state.line + 1)
        return state.to(step["on_no_answer"])

    # -- voicemail ---------------------------------------------------------------------------
    def enter_voicemail(self, step, state):
        view = self.view(state.departement)
        if not (view and view.voicemail_enabled):
            return state.to(step["otherwise"])
        self.emit(self.say(step["prompt"], state),
                  Record(state, max_length=self.ctx.voicemail_max_seconds))
        return None

    def result_voicemail(self, step, state, inp):
        if inp.recording_url and (inp.recording_seconds or 0) > 0:
            self.track(recording_url=inp.recording_url, recording_seconds=inp.recording_seconds)
            self.emit(self.say(step["thanks_prompt"], state), Hangup())
            return None
        self.emit(self.say(step["empty_prompt"], state))
        return state.to(step["otherwise"])

    # -- callback ----------------------------------------------------------------------------
    def enter_ask_number(self, step, state):
        asking = state.to(state.step, attempts=state.attempts, number=None)
        self.emit(Gather(asking, (self.say(step["prompt"], asking),), timeout=8))
        return None

    def result_ask_number(self, step, state, inp):
        if not inp.digits:
            return self.retry_or_fail(step, state, "no_input", step["on_failure"])
        territory = territories().get(state.departement or "")
        number = parse_callback_number(inp.digits, territory.phone_region if territory else "FR")
        if number is None:
            return self.retry_or_fail(step, state, step["invalid_prompt"], step["on_failure"])
        return state.to(step["on_valid"], number=number)

    def enter_confirm_number(self, step, state):
        if not state.number:  # a stale link: ask for the number again
            return state.to(step["on_retry"])
        self.emit(Gather(state, (self.say(step["prompt"], state,
                                          numero=french.phone_number(state.number)),),
                         num_digits=1, timeout=6))
        return None

    def result_confirm_number(self, step, state, inp):
        key = (inp.digits or "")[:1]
        if not state.number or key == step["retry_key"]:
            return state.to(step["on_retry"], number=None)
        if key == step["confirm_key"]:
            return state.to(step["on_confirm"])
        problem = "no_input" if not key else "invalid_choice"
        return self.retry_or_fail(step, state, problem, step["on_failure"])

    def enter_callback(self, step, state):
        """Register the callback request (the edge's record creates the ticket), then hang up."""
        number = self.ctx.caller_number if step["number"] == "caller" else state.number
        if not number:  # hidden number (or a stale link): the caller types one
            return state.to(step["otherwise"], number=None)
        self.track(callback_number=number)
        self.emit(self.say(step["prompt"], state), Hangup())
        return None


def start(flow: Flow, ctx: Context) -> Result:
    """Actions for a new incoming call."""
    return _Run(flow, ctx).enter_chain(CallState(step=flow.start))


def resume(flow: Flow, state: CallState, inp: Input, ctx: Context) -> Result:
    """Actions after the verb of `state.step` reported its result (digits, dial, recording)."""
    run = _Run(flow, ctx)
    step = flow.step(state.step)
    handler = getattr(run, f"result_{step['type']}", None)
    if handler is None:  # a step that never waits: re-enter it (e.g. a replayed URL)
        return run.enter_chain(state)
    run.track(step=state.step)
    return run.enter_chain(handler(step, state, inp))


def whisper(flow: Flow, state: CallState, ctx: Context) -> Result:
    """What the referent hears on picking up, before being connected."""
    run = _Run(flow, ctx)
    step = flow.step(state.step)
    run.emit(Gather(state, (run.say(step["whisper_prompt"], state),), num_digits=1, timeout=6))
    run.emit(Say("whisper_declined", run.params(state)), Hangup())
    return run.out


def whisper_accepted(flow: Flow, state: CallState, digits: str | None) -> bool:
    """True when the referent pressed the accept key: only then the call counts as answered."""
    return (digits or "")[:1] == flow.step(state.step)["whisper_accept_key"]
