"""CallState <-> URL query parameters. The signature covers the URL, so it cannot be forged.

A callback number typed by the caller travels between its entry and its confirmation: it is
personal data, and URLs end up in access logs, so it is sealed (encrypted and authenticated
with a key derived from CALLER_HASH_KEY), never written in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from zoneinfo import ZoneInfo

from callflows.actions import CallState

_CODE = re.compile(r"^(0[1-9]|[1-8]\d|9[0-5]|2A|2B|97[1-46])$")
_STEP = re.compile(r"^[a-z_]{1,40}$")
_THEMATIQUE = re.compile(r"^[a-z_]{0,40}$")
_NUMBER = re.compile(r"^[0-9]{1,3}$")
_E164 = re.compile(r"^\+[0-9]{4,16}$")
_NONCE, _TAG = 12, 10
#: Naive simulated instants are read in metropolitan time.
DEFAULT_TZ = ZoneInfo("Europe/Paris")


class BadState(ValueError):
    """The URL does not carry a valid call state (stale or tampered link)."""


def _derive(key: str, purpose: bytes) -> bytes:
    return hmac.new(key.encode(), b"svi-url-number:" + purpose, hashlib.sha256).digest()


def seal(number: str, key: str) -> str:
    """`number` encrypted (HMAC-SHA256 keystream, random nonce) and authenticated, URL-safe."""
    if not key:
        raise ValueError("no key to seal a number with (CALLER_HASH_KEY)")
    nonce, data = secrets.token_bytes(_NONCE), number.encode()
    stream = hmac.new(_derive(key, b"stream"), nonce, hashlib.sha256).digest()
    body = bytes(a ^ b for a, b in zip(data, stream, strict=False))
    tag = hmac.new(_derive(key, b"tag"), nonce + body, hashlib.sha256).digest()[:_TAG]
    return base64.urlsafe_b64encode(nonce + body + tag).rstrip(b"=").decode()


def unseal(value: str, key: str) -> str:
    """The number `seal` sealed; BadState when tampered with, sealed with another key, or odd."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        raise BadState("numéro illisible dans l'URL") from None
    nonce, body, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    if not key or len(body) < 5 or len(body) > 17 or not hmac.compare_digest(
            tag, hmac.new(_derive(key, b"tag"), nonce + body, hashlib.sha256).digest()[:_TAG]):
        raise BadState("numéro illisible dans l'URL")
    stream = hmac.new(_derive(key, b"stream"), nonce, hashlib.sha256).digest()
    number = bytes(a ^ b for a, b in zip(body, stream, strict=False)).decode("ascii", "replace")
    if not _E164.match(number):
        raise BadState("numéro illisible dans l'URL")
    return number


def encode(state: CallState, key: str = "") -> dict[str, str]:
    """Query parameters for a state (short names: these URLs are signed on every request);
    `key` seals a callback number (CALLER_HASH_KEY)."""
    params = {"s": state.step}
    if state.attempts:
        params["a"] = str(state.attempts)
    if state.departement:
        params["d"] = state.departement
    if state.thematique:
        params["m"] = state.thematique
    if state.line:
        params["l"] = str(state.line)
    if state.number:
        params["n"] = seal(state.number, key)
    return params


def decode(args, key: str = "") -> CallState:
    """The state carried by request.args; BadState when malformed (`key`: see `encode`)."""
    step, attempts = args.get("s", ""), args.get("a", "0")
    dept, thematique, line = args.get("d") or None, args.get("m") or "", args.get("l", "0")
    if not _STEP.match(step) or not _NUMBER.match(attempts) or not _NUMBER.match(line):
        raise BadState(f"état d'appel illisible : {dict(args)!r}")
    if dept is not None and not _CODE.match(dept):
        raise BadState(f"département illisible dans l'URL : {dept!r}")
    if not _THEMATIQUE.match(thematique):
        raise BadState(f"thématique illisible dans l'URL : {thematique!r}")
    number = unseal(args["n"], key) if args.get("n") else None
    return CallState(step=step, attempts=min(int(attempts), 9), departement=dept,
                     thematique=thematique or None, line=min(int(line), 9), number=number)


def parse_instant(text: str) -> datetime:
    """ISO instant; a naive one is read in Europe/Paris."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo else value.replace(tzinfo=DEFAULT_TZ)
