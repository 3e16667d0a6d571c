"""Load a flow definition (YAML) and validate it, with errors that name the step and the key."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

import prompts
from core.text import describe, forbidden

DEFAULT_FLOW = Path(__file__).with_name("main.yaml")

#: Per step type: required keys, optional keys, and which of them name another step.
STEP_TYPES: dict[str, tuple[set[str], set[str], set[str]]] = {
    "say": ({"prompts"}, {"next", "hangup", "outcome"}, {"next"}),
    "returning_caller": ({"prompt", "accept_key", "on_accept", "on_other", "next"}, set(),
                         {"on_accept", "on_other", "next"}),
    "ask_departement": ({"prompt", "on_valid", "on_corsica", "on_failure"}, {"max_attempts"},
                        {"on_valid", "on_corsica", "on_failure"}),
    "ask_corsica": ({"prompt", "on_valid", "on_failure"}, {"max_attempts"},
                    {"on_valid", "on_failure"}),
    "menu": ({"options", "on_timeout", "on_failure"}, {"prompt", "prompts", "max_attempts"},
             {"on_timeout", "on_failure"}),
    "route": ({"on_open", "on_closed", "on_no_phone_assistance"}, set(),
              {"on_open", "on_closed", "on_no_phone_assistance"}),
    "dial": ({"whisper_prompt", "whisper_accept_key", "on_no_answer"}, {"prompt"},
             {"on_no_answer"}),
    "closed": ({"next"}, set(), {"next"}),
    "voicemail": ({"prompt", "thanks_prompt", "empty_prompt", "otherwise"}, set(), {"otherwise"}),
    "announce": ({"prompt", "next"}, set(), {"next"}),
    "ask_number": ({"prompt", "invalid_prompt", "on_valid", "on_failure"}, {"max_attempts"},
                   {"on_valid", "on_failure"}),
    "confirm_number": ({"prompt", "confirm_key", "retry_key", "on_confirm", "on_retry",
                        "on_failure"}, {"max_attempts"}, {"on_confirm", "on_retry", "on_failure"}),
    "callback": ({"prompt", "number", "otherwise"}, set(), {"otherwise"}),
}
OUTCOMES = {"no_answer", "no_phone_assistance", "invalid_departement", "out_of_hours"}
#: Placeholders the engine fills for every prompt (`motif`: the label of the thématique chosen,
#: as the referent hears it; the name is the prompts' own, which admins read).
KNOWN_PLACEHOLDERS = {"departement", "nom", "formulaire", "courriel", "horaires", "reouverture",
                      "ferie", "motif_fermeture", "motif", "numero", "message"}
#: What `when` may name on a prompt or a menu option, besides a placeholder that has a value:
#: the caller's number can be called back, or is hidden; the département takes voicemails.
CONDITIONS = {"caller_number", "hidden_caller", "voicemail"}
#: Where a `callback` step takes the number from: the caller's own, or the one typed.
CALLBACK_NUMBERS = {"caller", "typed"}


class FlowError(ValueError):
    """The flow definition is invalid; the message names the step and the key."""


@dataclass(frozen=True)
class Flow:
    """A validated flow definition."""

    start: str
    max_attempts: int
    steps: dict[str, dict]

    @cached_property
    def thematique_labels(self) -> dict[str, str]:
        """Label of each thématique a menu offers (the first menu naming it wins)."""
        labels: dict[str, str] = {}
        for step in self.steps.values():
            for option in (step.get("options") or {}).values():
                if option.get("thematique"):
                    labels.setdefault(option["thematique"],
                                      option.get("label", option["thematique"]))
        return labels

    def step(self, name: str) -> dict:
        """The definition of one step (FlowError for an unknown name, e.g. a stale URL)."""
        try:
            return self.steps[name]
        except KeyError:
            raise FlowError(f"étape inconnue : {name!r}") from None


def _prompt_names(step: dict) -> list[str]:
    names = []
    for key in ("prompt", "whisper_prompt", "thanks_prompt", "empty_prompt", "invalid_prompt"):
        if key in step:
            names.append(step[key])
    for entry in step.get("prompts", []):
        names.append(entry["prompt"] if isinstance(entry, dict) else entry)
    for option in step.get("options", {}).values():
        if "prompt" in option:
            names.append(option["prompt"])
    return names


def _conditions(step: dict) -> list[str]:
    """Every `when` of a step's prompts and options."""
    found = [entry["when"] for entry in step.get("prompts", [])
             if isinstance(entry, dict) and "when" in entry]
    found += [option["when"] for option in (step.get("options") or {}).values()
              if isinstance(option, dict) and "when" in option]
    return found


def validate(data: dict, source: str = "flow") -> Flow:
    """Check a parsed definition and return it as a Flow; raise FlowError listing every problem."""
    errors: list[str] = []
    try:
        prompts.catalogue()
    except prompts.PromptError as exc:  # the prompt file itself breaks the text policy
        raise FlowError(exc.args[0]) from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
        raise FlowError(f"{source} : il faut une clé « steps » contenant les étapes")
    steps: dict[str, dict] = data["steps"]
    start = data.get("start")
    if start not in steps:
        errors.append(f"start : l'étape {start!r} n'existe pas")
    max_attempts = data.get("max_attempts", 3)
    if not isinstance(max_attempts, int) or not 1 <= max_attempts <= 9:
        errors.append("max_attempts : un entier de 1 à 9 est attendu")
    for name, step in steps.items():
        where = f"étape {name}"
        if not isinstance(step, dict) or step.get("type") not in STEP_TYPES:
            errors.append(f"{where} : type inconnu {step.get('type') if isinstance(step, dict) else step!r}"
                          f" (attendu : {', '.join(sorted(STEP_TYPES))})")
            continue
        required, optional, targets = STEP_TYPES[step["type"]]
        keys = set(step) - {"type"}
        for key in sorted(required - keys):
            errors.append(f"{where} : clé obligatoire manquante « {key} »")
        for key in sorted(keys - required - optional):
            errors.append(f"{where} : clé inconnue « {key} »")
        for key in targets & keys:
            if step[key] not in steps:
                errors.append(f"{where} : « {key} » renvoie à l'étape inconnue {step[key]!r}")
        for digit, option in (step.get("options") or {}).items():
            if not (isinstance(digit, str) and len(digit) == 1 and digit in "0123456789*"):
                errors.append(f"{where} : option {digit!r} : une seule touche entre guillemets")
            elif not isinstance(option, dict) or option.get("next") not in steps:
                errors.append(f"{where} : option {digit} : « next » doit nommer une étape")
            elif "label" in option and forbidden(str(option["label"])):
                errors.append(f"{where} : option {digit} : « label » contient un caractère "
                              f"interdit ({describe(forbidden(str(option['label'])))})")
        for condition in _conditions(step):
            if condition not in CONDITIONS | KNOWN_PLACEHOLDERS:
                errors.append(f"{where} : condition « when » inconnue {condition!r} (attendu : "
                              f"{', '.join(sorted(CONDITIONS | KNOWN_PLACEHOLDERS))})")
        if step["type"] == "callback" and step.get("number") not in CALLBACK_NUMBERS:
            errors.append(f"{where} : « number » vaut {' ou '.join(sorted(CALLBACK_NUMBERS))}")
        for key in ("confirm_key", "retry_key"):
            if key in step and not (isinstance(step[key], str) and len(step[key]) == 1
                                    and step[key] in "0123456789*"):
                errors.append(f"{where} : « {key} » : une seule touche entre guillemets")
        if step.get("outcome") and step["outcome"] not in OUTCOMES:
            errors.append(f"{where} : issue inconnue {step['outcome']!r}")
        if step["type"] == "say" and not step.get("hangup") and "next" not in step:
            errors.append(f"{where} : il faut « next » ou « hangup: true »")
        for prompt in _prompt_names(step):
            try:
                unknown = prompts.placeholders(prompt) - KNOWN_PLACEHOLDERS
            except prompts.PromptError:
                errors.append(f"{where} : prompt inconnu {prompt!r}")
                continue
            if unknown:
                errors.append(f"{where} : prompt {prompt} : variables inconnues {sorted(unknown)}")
    if errors:
        raise FlowError(f"{source} invalide :\n- " + "\n- ".join(errors))
    return Flow(start=start, max_attempts=max_attempts, steps=steps)


def load(path: str | Path | None = None) -> Flow:
    """Read and validate a flow file (default: callflows/main.yaml)."""
    path = Path(path or DEFAULT_FLOW)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FlowError(f"{path} : lecture impossible : {exc}") from None
    return validate(data, str(path))
