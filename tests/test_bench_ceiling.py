"""The call benchmark: its ceiling server (bare Flask, signature, one committed INSERT) and how
the real step is judged against it."""

from __future__ import annotations

import argparse

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bench import __main__ as bench
from bench import ceiling
from bench.bare import TWIML
from bench.load import incoming_call_params
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests.helpers import call_record
from tracking.models import Call, CallEvent


def test_ceiling_commits_each_signed_call_and_refuses_a_forged_one(app, db):
    server = ceiling.create_app({"DATABASE_URL": app.config["DATABASE_URL"],
                                 "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": PUBLIC_BASE,
                                 "CALLER_HASH_KEY": "bench-key"})
    client = server.test_client()
    sid = "CA" + "c" * 32
    params = incoming_call_params(sid, "+33612345678")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + "/ivr/voice", params)
    try:
        answer = client.post("/ivr/voice", data=params, headers={"X-Twilio-Signature": signature})
        forged = incoming_call_params("CA" + "f" * 32, "+33612345678")
        refused = client.post("/ivr/voice", data=forged, headers={"X-Twilio-Signature": signature})
    finally:
        server.extensions["ceiling.database"].connection().close()

    assert answer.status_code == 200 and answer.get_data(as_text=True) == TWIML
    # Committed (read on another connection), one row in the calls table, and nothing else.
    call = call_record(db, sid)
    assert (call.status, call.called_number, call.caller_masked) == (
        "in-progress", "+33806000156", "+336••••78")
    assert call.caller_hash not in (None, "+33612345678") and call.started_at is not None
    assert db.scalar(select(func.count()).select_from(CallEvent)) == 0
    assert refused.status_code == 403
    assert db.scalar(select(func.count()).select_from(Call)) == 1


def test_the_statements_diagnostic_writes_what_the_real_step_writes(app, db):
    from bench import statements
    server = statements.create_app({"DATABASE_URL": app.config["DATABASE_URL"],
                                    "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": PUBLIC_BASE,
                                    "CALLER_HASH_KEY": "bench-key"})
    sid = "CA" + "d" * 32
    params = incoming_call_params(sid, "+33612345678")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + "/ivr/voice", params)
    try:
        answer = server.test_client().post("/ivr/voice", data=params,
                                           headers={"X-Twilio-Signature": signature})
    finally:
        server.extensions["statements.connection"]().dbapi.close()
    assert answer.status_code == 200 and answer.get_data(as_text=True) == TWIML
    call = call_record(db, sid)
    assert (call.step, call.status) == ("departement", "in-progress")
    event = db.scalars(select(CallEvent).where(CallEvent.call_id == call.id)).one()
    assert (event.step, event.data["_reached"]) == ("welcome", "departement")


def _run(rps: float, p99_ms: float, **extra) -> dict:
    """A run's figures as the benchmark records them, without error."""
    return dict(rps=rps, p50_us=1000, p90_us=2000, p99_us=p99_ms * 1000, max_us=30000,
                requests=int(rps * 12), non200=0, wraps=0, connect_errors=0, read_errors=0,
                write_errors=0, timeouts=0, server_errors=0, server_cpu=1.5, wrk_cpu=0.1,
                other_cpu=0.0, duration_us=12e6, **extra)


def _logged(rps: float, p99_ms: float, kind: str) -> dict:
    n = int(rps * 12)
    return _run(rps, p99_ms, calls_logged=n, events_logged=n if kind != "ceiling" else 0,
                kind=kind)


def _report(rounds: list[dict]) -> tuple[str, int]:
    args = argparse.Namespace(connections=8, workers=2, threads=1, wrk_threads=1, duration=12,
                              warmup=3, callers=3000, history=20000)
    text, _md, status = bench.render(args, ["--workers", "2"], {"CPU": "test"}, rounds, [],
                                     0.3, 1.0)
    return text, status


@pytest.mark.parametrize(("sqlite_rps", "p99_ms", "verdict"), [
    (850, 15.0, "PASS"),   # 0.85 × its ceiling
    (700, 15.0, "FAIL"),   # 0.70 × its ceiling
    (900, 25.0, "FAIL"),   # fast enough, but p99 over 20 ms
])
def test_the_real_step_is_judged_against_the_ceiling_of_its_own_database(sqlite_rps, p99_ms,
                                                                         verdict):
    rounds = [{"bare": _run(4000, 5, kind="bare"),
               "ceiling-sqlite": _logged(1000, 10, "ceiling"),
               "sqlite": _logged(sqlite_rps, p99_ms, "sqlite"),
               "ceiling-postgres": _logged(500, 10, "ceiling"),
               "postgres": _logged(450, 15, "postgres")}]  # 0.90 × its own ceiling
    text, status = _report(rounds)
    assert "Real app, PostgreSQL: throughput 0.90 × its ceiling (≥ 0.8)" in text
    # Same server CPU (1.5 cores) for fewer requests: more CPU per request, in proportion.
    assert "in CPU per request 0.90 × its ceiling" in text
    assert f"Real app, SQLite: throughput {sqlite_rps / 1000:.2f} × its ceiling" in text
    assert f"Verdict: {verdict}" in text and status == (0 if verdict == "PASS" else 1)


def test_ratios_are_taken_within_each_round_then_their_median():
    rounds = [{"ceiling-sqlite": _logged(c, 10, "ceiling"), "sqlite": _logged(r, 10, "sqlite")}
              for c, r in ((1000, 900), (500, 400), (800, 560))]  # 0.90, 0.80, 0.70
    text, status = _report(rounds)
    assert "throughput 0.80 × its ceiling (≥ 0.8; rounds: 0.90, 0.80, 0.70)" in text
    assert status == 0


def test_a_ceiling_that_lost_calls_makes_the_run_doubtful():
    lost = _logged(1000, 10, "ceiling") | {"calls_logged": 11000}
    text, status = _report([{"ceiling-sqlite": lost, "sqlite": _logged(900, 10, "sqlite")}])
    assert "11000 calls logged for 12000 answered requests" in text and status == 2
