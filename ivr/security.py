"""Twilio request signatures, checked against the public URL (not the proxied one)."""

from __future__ import annotations

import hmac

from flask import Request
from twilio.request_validator import HMAC_SHA1, RequestValidator, get_signature_algorithm


def public_url(request: Request, public_base: str) -> str:
    """The URL Twilio called: PUBLIC_BASE_URL (else the request's own scheme and host, as a
    trusted proxy forwarded them: core/proxy.py) + path + the query string exactly as sent
    (`request.url` would decode some of its escapes, %3A say, which Twilio signed)."""
    query = request.query_string.decode()
    return ((public_base or request.host_url.rstrip("/")) + request.path
            + (f"?{query}" if query else ""))


class _FormValues:
    """The posted form as the validator reads it: its `getall` is tried first.

    The library probes `getall` (MultiDict), then `getlist`, by catching AttributeError for
    every parameter; Werkzeug's form only has `getlist`, so this saves an exception per
    parameter (a Twilio webhook has about 25) on every request.
    """

    def __init__(self, form):
        self._form = form

    def __iter__(self):
        return iter(self._form)

    def getall(self, name: str) -> list[str]:
        return self._form.getlist(name)


#: The library's validators by auth token (the configured one, in practice).
_VALIDATORS: dict[str, RequestValidator] = {}


def _validator(auth_token: str) -> RequestValidator:
    """The library's validator for a token, made once per process."""
    validator = _VALIDATORS.get(auth_token)
    if validator is None:
        validator = _VALIDATORS[auth_token] = RequestValidator(auth_token)
    return validator


def is_valid(request: Request, auth_token: str, public_base: str) -> bool:
    """True when X-Twilio-Signature matches the request, signed with the auth token."""
    environ = request.environ  # the headers, read as `request.headers` would
    signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
    if not signature or not signature.isascii():  # base64 only: anything else is forged
        return False
    url = public_url(request, public_base)
    params = _FormValues(request.form) if request.method == "POST" else {}
    settings = environ.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS")
    algorithm = get_signature_algorithm(settings) if settings else HMAC_SHA1
    validator = _validator(auth_token)
    try:
        # Every genuine request matches the URL as configured: one HMAC on the hot path.
        if hmac.compare_digest(validator.compute_signature(url, params, algorithm), signature):
            return True
    except ValueError:  # unsupported algorithm: the library's validate() logs and refuses
        pass
    # Twilio may sign the URL with or without an explicit port: the library tries both.
    return validator.validate(url, params, signature, algorithm=algorithm)
