"""Every sentence the caller hears, in French, keyed by name, with placeholders."""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import yaml

from core.text import TextRefused, check

PROMPTS_DIR = Path(__file__).parent
AUDIO_DIR = PROMPTS_DIR / "audio"
AUDIO_SUFFIXES = (".mp3", ".wav")


class PromptError(KeyError):
    """Unknown prompt name or missing placeholder."""


@lru_cache(maxsize=4)
def catalogue(language: str = "fr") -> dict[str, str]:
    """All prompts of a language, whitespace folded."""
    with (PROMPTS_DIR / f"{language}.yaml").open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    prompts = {str(name): " ".join(str(text).split()) for name, text in data.items()}
    for name, text in prompts.items():
        try:
            check(text, f"prompts/{language}.yaml, prompt « {name} »")
        except TextRefused as exc:
            raise PromptError(str(exc)) from None
    return prompts


def placeholders(name: str, language: str = "fr") -> set[str]:
    """Names of the placeholders used by a prompt."""
    return {field for _, field, _, _ in string.Formatter().parse(text(name, language)) if field}


def text(name: str, language: str = "fr") -> str:
    """Raw text of a prompt."""
    try:
        return catalogue(language)[name]
    except KeyError:
        raise PromptError(f"prompt inconnu : {name}") from None


def render(name: str, params: dict[str, object], language: str = "fr",
           template: str | None = None) -> str:
    """Prompt text (or `template`, an admin's text for it) with its placeholders filled in."""
    try:
        return (text(name, language) if template is None else template).format(**params)
    except KeyError as exc:
        raise PromptError(f"prompt {name} : valeur manquante pour {exc}") from None


@lru_cache(maxsize=1)
def descriptions() -> dict[str, dict[str, str]]:
    """French descriptions for the admin pages: {"prompts": {name: …}, "placeholders": {name: …}}."""
    with (PROMPTS_DIR / "descriptions.yaml").open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=128)
def audio_file(name: str) -> str | None:
    """File name of a recording that replaces the prompt's speech, if one exists."""
    for suffix in AUDIO_SUFFIXES:
        if (AUDIO_DIR / f"{name}{suffix}").is_file():
            return f"{name}{suffix}"
    return None
