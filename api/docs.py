"""The API's documentation page (`/api/`): the OpenAPI document rendered for people, in French,
on the DSFR, without any script (the document itself is at `/api/openapi.json`)."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, render_template
from markupsafe import Markup, escape

from web import policy

bp = Blueprint("apidoc", __name__, url_prefix="/api")

DESCRIPTION = (
    "API JSON du service d'assistance téléphonique : l'annuaire de routage, les appels et "
    "sollicitations, leur qualification, les indicateurs et les classeurs. Chaque requête "
    "présente un jeton d'API personnel (`Authorization: Bearer svi_…`) et agit au nom de son "
    "propriétaire, avec son rôle et ses départements. Les erreurs sont au format "
    "`application/problem+json`, avec un message en français et, pour une donnée refusée, le "
    "champ en cause dans `errors`.")
METHODS = ("get", "post", "put", "patch", "delete")


def _resolve(spec: dict, schema: dict | None) -> dict:
    """A schema with its $ref followed (one level)."""
    if not schema:
        return {}
    ref = schema.get("$ref")
    if ref:
        return spec["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
    return schema


def _type(spec: dict, schema: dict) -> str:
    """A field's type, as a person reads it (objects named `Name`, linked by the template)."""
    if "$ref" in schema:
        return "objet `" + schema["$ref"].rsplit("/", 1)[-1] + "`"
    kind = schema.get("type", "objet")
    if kind == "array":
        inner = _type(spec, schema.get("items", {}))
        return ("liste d'objets " + inner[len("objet "):]) if inner.startswith("objet `") \
            else "liste de " + inner
    names = {"string": "texte", "integer": "entier", "number": "nombre", "boolean": "booléen",
             "object": "objet"}
    text = names.get(kind, kind)
    if schema.get("format") in ("date", "date-time"):
        text = {"date": "date", "date-time": "date et heure"}[schema["format"]]
    if schema.get("enum"):
        text += " : " + ", ".join(str(v) for v in schema["enum"] if v is not None)
    return text + (" ou null" if schema.get("nullable") else "")


def _fields(spec: dict, schema: dict | None) -> list[dict]:
    schema = _resolve(spec, schema)
    if schema.get("type") == "array":
        schema = _resolve(spec, schema.get("items"))
    required = set(schema.get("required", ()))
    return [{"name": name, "type": _type(spec, prop), "required": name in required,
             "description": prop.get("description", "")}
            for name, prop in schema.get("properties", {}).items()]


def operations(spec: dict) -> list[dict]:
    """Every operation of the document, grouped in the order of its tags."""
    tags = {t["name"]: t.get("description", "") for t in spec.get("tags", [])}
    found = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = [{"name": p["name"], "where": {"query": "requête", "path": "chemin"}.get(
                p["in"], p["in"]), "type": _type(spec, p.get("schema", {})),
                "required": p.get("required", False), "description": p.get("description", "")}
                for p in item.get("parameters", []) + op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            responses = []
            for status, response in op.get("responses", {}).items():
                if "$ref" in response:
                    continue
                content = response.get("content", {})
                kind = next(iter(content), "")
                responses.append({"status": status, "type": kind,
                                  "fields": _fields(spec, content.get(kind, {}).get("schema"))})
            found.append({"method": method.upper(), "path": path, "tag": (op.get("tags") or [""])[0],
                          "summary": op.get("summary", ""), "description": op.get("description", ""),
                          "parameters": params, "body": _fields(spec, body.get("schema")),
                          "responses": responses, "anchor": f"{method}-{path}".replace("/", "-")
                          .replace("{", "").replace("}", "")})
    return [{"name": tag, "description": description,
             "operations": [o for o in found if o["tag"] == tag]}
            for tag, description in tags.items() if any(o["tag"] == tag for o in found)]


def schemas(spec: dict) -> list[dict]:
    """The objects the operations refer to, with their fields."""
    return [{"name": name, "fields": _fields(spec, schema)}
            for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items())]


@bp.app_template_filter("inline_code")
def inline_code(text: str) -> Markup:
    """`name` spans as <code>, object names linked to their description; the rest escaped."""
    def span(match):
        name = match.group(1)
        if name[:1].isupper() and name.isalnum():
            return f'<a href="#objet-{name}"><code>{name}</code></a>'
        return f"<code>{name}</code>"
    return Markup(re.sub(r"`([^`]+)`", span, str(escape(text or ""))))


@bp.get("/")
@policy.allow(policy.public)
def index():
    """The documentation of the API, for people."""
    spec = current_app.extensions["svi-api"].spec.to_dict()
    return render_template("api/index.html", title="API : documentation", spec=spec,
                           groups=operations(spec), schemas=schemas(spec))
