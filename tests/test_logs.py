"""Log lines: one JSON line per request with the call's CallSid, the IVR step and the duration;
every line of a call JSON and carrying its CallSid, referents' legs included; no phone number
anywhere (the caller's, a callback number typed on the keypad); text format in development."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from core import logs
from core.settings import SettingsError, load
from ivr.simulator import Referent
from tests.conftest import PUBLIC_BASE

CALLER = "+33612345678"
TYPED = "0611223344"
NOBODY = Referent("no-answer")


@pytest.fixture
def captured():
    """What the root logger writes during the test, as the production handler formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_request_of_a_call_is_one_json_line_with_its_callsid(app, twilio, clock, captured):
    clock.set("2026-12-21T10:00")
    answered = twilio.call(caller=CALLER, keys=["75", "1", "2"],
                           referents=[Referent("accept", talk_seconds=42)])
    callback = twilio.call(caller=CALLER, keys=["93", "1", "1", "2", TYPED, "1"],
                           referents=[NOBODY, NOBODY])
    assert "Votre demande de rappel est enregistrée" in callback.heard[-1]
    output = captured.getvalue()
    lines = _lines(captured)  # every line JSON
    for t in (answered, callback):
        mine = [line for line in lines if line.get("call_sid") == t.call_sid]
        requests = [line for line in mine if line.get("event") == "request"]
        assert len(requests) == len(t.requests)  # one line per webhook, legs' included
        for line, (url, params, status) in zip(requests, t.requests, strict=True):
            assert line["path"] == url.removeprefix(PUBLIC_BASE).split("?")[0]
            assert line["status"] == status == 200 and line["method"] == "POST"
            assert line["endpoint"].startswith("ivr.") and line["duration_ms"] >= 0
            assert line["level"] == "INFO" and line["logger"] == "svi.access"
            assert line["pid"] and line["instance"] and line["ts"].endswith("Z")
            if params.get("CallSid") != t.call_sid:  # a referent's leg: its own SID beside
                assert line["leg_sid"] == params["CallSid"]
        steps = {line["step"] for line in requests if "step" in line}
        assert "welcome" in steps and len(steps) >= 4, steps  # the flow's steps, by name
    # The app's own lines carry the CallSid too (« callback requested … », masked number).
    assert any(line["logger"] == "svi.ivr" and line.get("call_sid") == callback.call_sid
               for line in lines)
    assert any("leg_sid" in line for line in lines)
    # No number in clear anywhere: neither the caller's nor the one typed for the callback.
    for digits in ("612345678", "611223344", "6 12 34 56 78"):
        assert digits not in output
    assert "+336••••••44" in output  # the typed number, masked, in « callback requested … »


def test_probes_are_not_logged_at_info(app, captured):
    client = app.test_client()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    assert client.get("/connexion").status_code == 200
    logged = [line["path"] for line in _lines(captured) if line.get("event") == "request"]
    assert logged == ["/connexion"]


def test_numbers_are_masked_in_messages_paths_and_tracebacks_in_both_formats():
    record = logging.LogRecord("svi.test", logging.ERROR, __file__, 1,
                               "rappel au %s ou au 06 12 34 56 78 (appel CA%s)",
                               (CALLER, "0123456789" * 3 + "ab"), None)
    try:
        raise ValueError("numéro 0033612345678 refusé")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["msg"] == "rappel au +336••••••78 ou au 0612••••78 (appel CA" + \
        "0123456789" * 3 + "ab)"  # a CallSid's digits are not a number
    assert "0033612345678" not in line["exc"] and "ValueError" in line["exc"]
    text = logs.TextFormatter().format(record)
    assert "612345678" not in text and "ERROR svi.test: rappel au +336••••••78" in text


def test_log_format_is_json_in_production_and_text_in_development(tmp_path):
    production = {"SVI_ENV": "production", "DATABASE_URL": "sqlite:///x", "SECRET_KEY": "s",
                  "TWILIO_AUTH_TOKEN": "t", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                  "PUBLIC_BASE_URL": PUBLIC_BASE, "SVI_CALLER_ID": "+33806000156"}
    assert load(str(tmp_path), environ=production)["LOG_FORMAT"] == "json"
    assert load(str(tmp_path), environ={})["LOG_FORMAT"] == "text"
    assert load(str(tmp_path), environ={**production, "LOG_FORMAT": "text"})["LOG_FORMAT"] == "text"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load(str(tmp_path), environ={"LOG_FORMAT": "xml"})
