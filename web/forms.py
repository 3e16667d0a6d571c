"""The base of every form of the web interface: CSRF (Flask-WTF) and WTForms' own messages in
French ("N'est pas une date valide.")."""

from __future__ import annotations

from flask_wtf import FlaskForm


class Form(FlaskForm):
    """A page's form: its CSRF token checked, built-in messages in French."""

    class Meta:
        locales = ["fr"]


def error_list(form) -> list[tuple[str, str, str]]:
    """Every error of a form as (field id, field label, message), nested lists included, in the
    order of the fields: what the error summary at the top of a page links to."""
    found = []

    def walk(field, label_prefix=""):
        entries = getattr(field, "entries", None)
        if entries is not None:  # a list of fields (FieldList): its own errors, then each entry
            for message in field.errors if isinstance(field.errors, list) else ():
                if isinstance(message, str):
                    found.append((field.id, field.label.text, message))
            for entry in entries:
                walk(entry)
            return
        sub = getattr(field, "form", None)
        if sub is not None and hasattr(sub, "_fields"):  # a form inside a form (FormField)
            for child in sub:
                walk(child)
            return
        for message in field.errors or ():
            if isinstance(message, str):
                found.append((field.id, field.label.text, message))

    for field in form:
        if field.name == "csrf_token":
            if field.errors:
                found.append((field.id, "Formulaire", "la page a expiré : validez-le de nouveau"))
            continue
        walk(field)
    return found


def plausible_year(form, field) -> None:
    """A date validator: the years a record of the service can have (as the imports say)."""
    from core.spreadsheets import EARLIEST_YEAR, LATEST_YEAR, is_plausible_year
    from wtforms.validators import ValidationError
    if field.data is not None and not is_plausible_year(field.data.year):
        raise ValidationError(f"date hors des années {EARLIEST_YEAR} à {LATEST_YEAR}")
