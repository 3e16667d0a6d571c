"""Marshmallow fields whose error messages are French, as every message the API returns.

A client sending a wrong value reads which field is wrong and why, in the language of the
service; text fields refuse the characters the text policy refuses (core/text.py), so that no
request can carry a NUL byte or a control character down to the database.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from marshmallow import Schema as BaseSchema
from marshmallow import ValidationError, fields, validate

from core import text as text_policy
from core.spreadsheets import EARLIEST_YEAR, LATEST_YEAR, is_plausible_year


class French:
    """Messages every field shares."""

    default_error_messages = {
        "required": "champ obligatoire",
        "null": "ce champ ne peut pas être vide (null)",
        "validator_failed": "valeur refusée",
    }


def _text_policy(value: str) -> None:
    char = text_policy.forbidden(value)
    if char is not None:
        raise ValidationError(f"caractère invisible ou interdit ({text_policy.describe(char)})")


class String(French, fields.String):
    """Text; characters the text policy forbids are refused."""

    default_error_messages = {"invalid": "texte attendu", "invalid_utf8": "texte UTF-8 invalide"}

    def __init__(self, *, max_length: int | None = None, **kwargs):
        checks = [_text_policy]
        if max_length is not None:
            checks.append(validate.Length(max=max_length,
                                          error=f"{max_length} caractères au plus"))
        extra = kwargs.pop("validate", None)
        checks += extra if isinstance(extra, list) else ([extra] if extra else [])
        super().__init__(validate=checks, **kwargs)


class Integer(French, fields.Integer):
    """A whole number; in a JSON body a JSON integer only (25.9 or "25" are refused, not
    rounded); in a query string (`strict=False`) its digits."""

    default_error_messages = {"invalid": "nombre entier attendu", "too_large": "nombre trop grand"}

    def __init__(self, *, strict: bool = True, **kwargs):
        super().__init__(strict=strict, **kwargs)


class Boolean(French, fields.Boolean):
    """true or false; in a JSON body JSON booleans only, in a query string (`strict=False`)
    also true/false, 1/0."""

    default_error_messages = {"invalid": "booléen attendu (true ou false)"}

    def __init__(self, *, strict: bool = True, **kwargs):
        if strict:
            kwargs.update(truthy={True}, falsy={False})
        else:
            kwargs.update(truthy={"true", "1"}, falsy={"false", "0"})
        super().__init__(**kwargs)


def _plausible(value) -> None:
    if not is_plausible_year(value.year):
        raise ValidationError(f"année hors de {EARLIEST_YEAR}–{LATEST_YEAR}")


class Date(French, fields.Date):
    """A date in a plausible year (ISO 8601, AAAA-MM-JJ)."""

    default_error_messages = {"invalid": "date attendue au format AAAA-MM-JJ",
                              "format": "date illisible"}

    def __init__(self, **kwargs):
        super().__init__(validate=_plausible, **kwargs)


def _plausible_instant(value) -> None:
    """A plausible year once in UTC, and an offset that exists (±14:00 at most)."""
    offset = value.utcoffset()
    if offset is not None:
        if abs(offset) > timedelta(hours=14):
            raise ValidationError("décalage horaire hors de −14:00 à +14:00")
        value = value.astimezone(UTC)
    _plausible(value)


class DateTime(French, fields.DateTime):
    """An instant in a plausible year (ISO 8601), with an offset of ±14:00 at most."""

    default_error_messages = {"invalid": "date et heure attendues au format ISO 8601",
                              "invalid_awareness": "date et heure ISO 8601 attendues",
                              "format": "date et heure illisibles"}

    def __init__(self, **kwargs):
        super().__init__(validate=_plausible_instant, **kwargs)


class Time(French, fields.Time):
    default_error_messages = {"invalid": "heure attendue au format HH:MM",
                              "format": "heure illisible"}

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", **kwargs)


class Float(French, fields.Float):
    default_error_messages = {"invalid": "nombre attendu", "special": "nombre attendu"}


class List(French, fields.List):
    default_error_messages = {"invalid": "liste attendue"}

    def __init__(self, inner, *, max_items: int | None = None, min_items: int = 0, **kwargs):
        if max_items is not None or min_items:
            kwargs["validate"] = validate.Length(
                min=min_items or None, max=max_items,
                error=f"de {min_items} à {max_items} éléments" if max_items
                else f"au moins {min_items} élément(s)")
        super().__init__(inner, **kwargs)


class Nested(French, fields.Nested):
    default_error_messages = {"type": "objet JSON attendu"}


class Dict(French, fields.Dict):
    default_error_messages = {"invalid": "objet JSON attendu"}


def one_of(choices) -> validate.OneOf:
    """A closed list of values, told in the message."""
    choices = list(choices)
    return validate.OneOf(choices, error="valeur inconnue « {input} » (attendu : {choices})")


def in_range(low: int, high: int) -> validate.Range:
    return validate.Range(min=low, max=high, error=f"de {low} à {high}")


class Schema(BaseSchema):
    """Base of every schema: French messages for a wrong type or an unknown field."""

    error_messages = {"type": "objet JSON attendu", "unknown": "champ inconnu"}
