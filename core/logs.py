"""Log lines: JSON (production) or text (development), phone numbers masked in both.

LOG_FORMAT=json writes one JSON object a line on stderr: `ts` (UTC, ms), `level`, `logger`,
`msg`, `pid`, `instance` (INSTANCE_NAME), and, for a line logged while a Twilio webhook is
handled, the call's `call_sid` (and `leg_sid` on a referent's leg). The access line of each
request (logger `svi.access`, see core/observability.py) adds `event: "request"`, `method`,
`endpoint`, `path`, `status`, `duration_ms` and the IVR `step`. An operator follows one call
across instances with `grep CA… | jq` or `jq 'select(.call_sid == "CA…")'`.

Numbers: the service only ever logs masked caller numbers (core.privacy.mask_number); as a
safety net every message, traceback and path is scanned for anything that looks like a phone
number (8 to 15 digits, or a French 0X XX XX XX XX) and masks it the same way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time

from core.privacy import mask_number

#: Phone-number-like runs: 8 to 15 digits (with an optional +), or 0X XX XX XX XX / 0X.XX.XX…,
#: not inside a longer word (a CallSid's hex digits are left alone).
#: A phone number as people and programs write it: digits (8 to 15, « + » or « %2B » first, URL
#: encoded), « +33 6 12 34 56 78 », « 06 12 34 56 78 », « 06.12.34.56.78 », « 06-12-34-56-78 ».
#: Dates (« 2026-12-03 ») and times are left alone: separated digits need a « + » or a leading 0.
_NUMBER = re.compile(r"(?:(?<![0-9A-Za-z+])|(?<=%2[Bb]))"
                     r"(?:\+\d{1,3}(?:[ .-]?\d){8,12}|\+?\d{8,15}|0\d(?:[ .-]\d\d){4})"
                     r"(?![0-9A-Za-z])")
_SEPARATORS = str.maketrans("", "", " .-")
#: Twilio SIDs: two letters and hex digits (what `call_sid`/`leg_sid` may hold).
_SID = re.compile(r"^[A-Za-z]{2}[0-9A-Za-z]{1,62}$")

#: This process in log lines (set by `configure`; else INSTANCE_NAME or the host name).
_instance: str | None = None


def _mask(match: re.Match) -> str:
    return mask_number(match.group().translate(_SEPARATORS))


def mask_numbers(text: str) -> str:
    """`text` with every phone-number-like run masked ('+33612345678' -> '+336••••••78')."""
    return _NUMBER.sub(_mask, text)


def instance_name() -> str:
    """This instance's name in log lines."""
    global _instance
    if _instance is None:
        _instance = os.environ.get("INSTANCE_NAME") or socket.gethostname()
    return _instance


def request_sids(req=None) -> dict:
    """The call's SIDs when a Twilio webhook is being handled and its form already read: the
    caller's CallSid (`c` in a referent-side URL, ParentCallSid, or CallSid) and the leg's."""
    if req is None:
        from flask import has_request_context, request
        if not has_request_context():
            return {}
        req = request._get_current_object()
    if not req.path.startswith("/ivr/"):
        return {}
    form = req.__dict__.get("form")  # never parsed here (size limits, 413…)
    if form is None:
        return {}
    own = _first(form, "CallSid")
    parent = _first(req.args, "c") or _first(form, "ParentCallSid") or own
    found = {}
    if _SID.match(parent):
        found["call_sid"] = parent
    if own != parent and _SID.match(own):
        found["leg_sid"] = own
    return found


def _first(values, key: str) -> str:
    """A MultiDict's first value for `key`, "" when absent (its own `get` raises and catches
    an exception for a missing key: too slow for every request)."""
    found = dict.get(values, key)
    return found[0] if found else ""


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)
_second: tuple[int, str] = (0, "")


def _timestamp(created: float) -> str:
    """ISO 8601 UTC to the millisecond; the part up to the second is computed once a second."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


#: One encoder for every line (json.dumps with options builds a new one each call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module's docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "svi", None)
        data = {"ts": _timestamp(record.created), "level": record.levelname,
                "logger": record.name,
                # The access line's message is built from masked parts (core/observability.py).
                "msg": record.getMessage() if fields is not None
                else mask_numbers(record.getMessage()),
                "pid": _pid, "instance": _instance or instance_name()}
        if fields is not None:
            data.update(fields)
        else:
            try:
                data.update(request_sids())
            except Exception:  # a log line never fails for want of its context
                pass
        if record.exc_info:
            data["exc"] = mask_numbers(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc"] = mask_numbers(record.exc_text)
        return _ENCODER.encode(data)


class TextFormatter(logging.Formatter):
    """The development format, numbers masked."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_numbers(super().format(record))


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of LOG_FORMAT ("json" or "text")."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(config: dict) -> None:
    """Set up the root logger on stderr with LOG_FORMAT and LOG_LEVEL, once per process.

    Like `logging.basicConfig`: a process whose root logger already has handlers of someone
    else's (a test runner's) keeps them; ours get the format of the latest app."""
    global _instance
    _instance = (config.get("INSTANCE_NAME") or os.environ.get("INSTANCE_NAME")
                 or socket.gethostname())
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "svi_handler", False)]
    for handler in ours:
        handler.setFormatter(formatter(config["LOG_FORMAT"]))
    if not root.handlers:
        # The multiprocessing process name is in no line of ours: not looked up every record.
        logging.logMultiprocessing = False
        handler = logging.StreamHandler(sys.stderr)
        handler.svi_handler = True
        handler.setFormatter(formatter(config["LOG_FORMAT"]))
        root.addHandler(handler)
        root.setLevel(config["LOG_LEVEL"])


def gunicorn_logconfig(log_format: str, level: str) -> dict:
    """gunicorn's `logconfig_dict`: its own error log in the same format as the app's, and no
    access log of its own.

    The root logger is left without handlers, for `configure` to set up in each worker."""
    factory = "core.logs.JsonFormatter" if log_format == "json" else "core.logs.TextFormatter"
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"svi": {"()": factory}},
        "handlers": {"svi": {"class": "logging.StreamHandler", "formatter": "svi",
                             "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["svi"], "propagate": False},
            # The app logs each request itself (core/observability.py): none from gunicorn.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }
