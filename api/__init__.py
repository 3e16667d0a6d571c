"""The JSON API (`/api/v1/`): the same operations as the web pages, for other systems (the
national helpdesk, a BI tool), authenticated by personal tokens (accounts/tokens.py) and
authorized by the same policy (web/policy.py).

Its OpenAPI 3 document is generated from the code by flask-smorest (`/api/openapi.json`) and
rendered as a readable page (`/api/`). Every error is `application/problem+json` (RFC 9457)
with a French message; a refused field is named in `errors`.
"""

from __future__ import annotations

import http
import json

from flask import Flask, jsonify, request
from flask_smorest import Api as SmorestApi
from flask_smorest import abort
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from api.fields import Dict, Integer, Schema, String

#: Where the API lives; every path under it answers JSON, errors included.
PREFIX = "/api/"
PROBLEM = "application/problem+json"
#: Largest request body of the API (a département's settings with 500 closures is ~60 kB).
MAX_BODY = 1024 * 1024
#: Deepest JSON accepted (the deepest body of the API is 3 levels).
MAX_DEPTH = 20

#: Titles of the problems, by status.
TITLES = {
    400: "Requête invalide", 401: "Authentification requise", 403: "Accès refusé",
    404: "Ressource introuvable", 405: "Méthode non autorisée", 409: "Conflit",
    413: "Requête trop volumineuse", 415: "Type de contenu non pris en charge",
    422: "Données invalides", 429: "Trop de requêtes", 500: "Erreur du service",
}
DETAILS = {
    400: "la requête est illisible",
    401: "présentez un jeton d'API valide : en-tête « Authorization: Bearer svi_… »",
    403: "votre compte n'a pas accès à cette ressource",
    404: "cette ressource n'existe pas",
    405: "cette méthode n'est pas acceptée sur cette adresse",
    413: f"le corps de la requête dépasse {MAX_BODY // 1024} Kio",
    415: "envoyez du JSON (Content-Type: application/json)",
    422: "la requête contient des champs invalides",
    500: "une erreur interne est survenue ; elle a été journalisée",
}


class Problem(Schema):
    """An error (RFC 9457 « problem details »), in French."""

    type = String(metadata={"description": "toujours « about:blank »"})
    title = String(metadata={"description": "intitulé de l'erreur"})
    status = Integer(metadata={"description": "code HTTP"})
    detail = String(metadata={"description": "explication pour une personne"})
    errors = Dict(metadata={"description": "champs refusés : emplacement → champ → messages"})


def _depth(value) -> int:
    """How deeply a parsed JSON value nests (iteratively: no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_body():
    """Before an API view reads a body: JSON only (415), at most MAX_BODY (413), readable and
    not absurdly nested (400, in French) — webargs then validates its fields."""
    if not is_api_request() or request.method not in ("POST", "PUT", "PATCH"):
        return None
    if request.content_length is not None and request.content_length > MAX_BODY:
        abort(413)
    if request.mimetype != "application/json":
        abort(415)
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        abort(413)
    request._cached_data = raw  # what webargs reads next (Request.get_data(cache=True))
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        abort(400, message="le corps de la requête doit être du JSON en UTF-8")
    except RecursionError:
        abort(400, message=f"JSON trop imbriqué ({MAX_DEPTH} niveaux au plus)")
    except json.JSONDecodeError as exc:
        abort(400, message=f"JSON illisible, ligne {exc.lineno} colonne {exc.colno} : "
                           "vérifiez les guillemets, virgules et accolades")
    if _depth(parsed) > MAX_DEPTH:
        abort(400, message=f"JSON trop imbriqué ({MAX_DEPTH} niveaux au plus)")
    return None


def is_api_request() -> bool:
    """A request for the API's part of the service, matched to a route or not."""
    return request.path == PREFIX.rstrip("/") or request.path.startswith(PREFIX)


def problem(error: HTTPException):
    """The problem+json response of an HTTP error."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    body = {"type": "about:blank",
            "title": TITLES.get(status) or http.HTTPStatus(status).phrase,
            "status": status}
    detail = data.get("message") or (error.description if getattr(error, "svi_detail", False)
                                     else DETAILS.get(status)) or ""
    if detail:
        body["detail"] = detail
    errors = data.get("errors") or data.get("messages")
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="svi"'
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


class Api(SmorestApi):
    """flask-smorest's Api, with problem+json errors documented and returned."""

    ERROR_SCHEMA = Problem

    def _register_responses(self):
        response = {"description": "Erreur (problem+json, message en français)",
                    "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)
        for status in http.HTTPStatus:
            if status >= 400:
                response = {"description": TITLES.get(status, status.phrase),
                            "schema": self.ERROR_SCHEMA}
                prepare_response(response, self.spec, PROBLEM)
                self.spec.components.response(status.name, response, lazy=True)

    def handle_http_exception(self, error):
        # Registered for every HTTPException of the app: the web pages keep their own.
        return problem(error) if is_api_request() else error


def init_app(app: Flask) -> None:
    """Create the API on `app`: configuration, blueprints, OpenAPI document and its page."""
    from api import directory, docs, indicators, me, solicitations, tickets, workbooks
    from web import policy
    from web.extensions import csrf

    app.config.update(
        API_TITLE="SVI – API du numéro national d'assistance",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": docs.DESCRIPTION},
            "servers": [{"url": "/"}],
            "components": {"securitySchemes": {
                "jeton": {"type": "http", "scheme": "bearer",
                          "description": "Jeton d'API personnel (« svi_… »), créé sur la "
                                         "page « Mes jetons d'API » ou par `flask tokens create`."}}},
            "security": [{"jeton": []}],
        },
    )
    api = Api(app)
    for module in (me, directory, solicitations, indicators, workbooks, tickets):
        api.register_blueprint(module.blp)
        csrf.exempt(module.blp)
    app.register_blueprint(docs.bp)
    app.before_request(check_body)
    # The OpenAPI document describes the API, not its data: anyone may read it.
    spec_view = app.view_functions["api-docs.openapi_json"]
    app.view_functions["api-docs.openapi_json"] = policy.allow(policy.public)(
        lambda: spec_view())
    app.extensions["svi-api"] = api
