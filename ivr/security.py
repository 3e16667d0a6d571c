"""Twilio request signatures, checked against the public URL (not the proxied one)."""

from __future__ import annotations

from flask import Request
from twilio.request_validator import RequestValidator, get_signature_algorithm


def public_url(request: Request, public_base: str) -> str:
    """The URL Twilio called: PUBLIC_BASE_URL + path + query string when configured."""
    if not public_base:
        return request.url
    query = request.query_string.decode()
    return public_base + request.path + (f"?{query}" if query else "")


def is_valid(request: Request, auth_token: str, public_base: str) -> bool:
    """True when X-Twilio-Signature matches the request, signed with the auth token."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    params = request.form if request.method == "POST" else {}
    algorithm = get_signature_algorithm(request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
    return RequestValidator(auth_token).validate(public_url(request, public_base), params, signature,
                                                 algorithm=algorithm)
