"""Prometheus metrics: what a signed call counts, bounded labels with no phone number nor
CallSid, who may read /metrics, the journal backlog, job runs, the scheduler's own endpoint,
and the sum over the workers of a real gunicorn server (multi-process mode)."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from core import db as core_db
from core import observability
from ivr.simulator import Emulator, HttpTransport, Referent
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests.servers import OPEN, app_env, flask, get, gunicorn, log_lines
from web import policy

CALLER = "+33612345678"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a metrics text, keyed by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client, **kwargs) -> dict:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain" and "Set-Cookie" not in response.headers
    return samples(response.get_data(as_text=True))


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


#: Anything in a label value that could be a number, a caller's input or a Twilio SID.
PERSONAL = re.compile(r"\d{5,}|\+|CA[0-9a-f]{8,}|@")


def test_a_signed_call_is_counted_by_outcome_departement_endpoint_and_step(app, twilio):
    client = app.test_client()
    before = scrape(client)
    t = twilio.call(caller=CALLER, keys=["75", "1", "2"],
                    referents=[Referent("accept", talk_seconds=42)])
    assert t.dialled == [["+33199007501", "+33199007502"]]
    after = scrape(client)
    assert delta(before, after, "svi_calls_total", outcome="answered", departement="75") == 1
    start = app.extensions["svi.flow"].start
    assert delta(before, after, "svi_webhook_duration_seconds_count",
                 endpoint="ivr.voice", step=start) == 1
    steps = [k for k in after if k[0] == "svi_webhook_duration_seconds_count"
             and ("endpoint", "ivr.step") in k[1] and delta(before, after, k[0], **dict(k[1]))]
    assert {dict(labels)["step"] for _, labels in steps} >= {"departement", "motif", "dial"}
    webhooks = sum(delta(before, after, name, **dict(labels)) for name, labels in after
                   if name == "svi_webhook_duration_seconds_count")
    assert webhooks == len(t.requests)  # every webhook timed once
    # No label anywhere holds a number, a SID or a caller's keys.
    for name, labels in after:
        for label, text in labels:
            if label != "le":  # a histogram bucket's bound (+Inf…)
                assert not PERSONAL.search(text), (name, label, text)
    text = client.get("/metrics").get_data(as_text=True)
    assert t.call_sid not in text and "612345678" not in text


def test_a_retried_status_callback_counts_the_call_once(app, twilio):
    client = app.test_client()
    before = scrape(client)
    t = twilio.call(caller=CALLER, keys=["75", "1", "2"], referents=[Referent("accept")])
    twilio.end(t, t.base)  # Twilio retries the final callback
    after = scrape(client)
    assert delta(before, after, "svi_calls_total", outcome="answered", departement="75") == 1


def test_an_apology_and_a_server_error_are_counted_by_endpoint(app, twilio):
    @policy.allow(policy.public)
    def broken():
        raise RuntimeError("boom")
    app.add_url_rule("/_broken", "test_broken", broken)
    client = app.test_client()
    before = scrape(client)
    t = Emulator(twilio.transport, auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)
    transcript, _ = t.begin(caller=CALLER)
    status, body = t.post(transcript, f"{PUBLIC_BASE}/ivr/step?s=%21%21", dict(transcript.base))
    assert status == 200 and "difficulté technique" in body  # a malformed URL: the apology
    assert client.get("/_broken").status_code == 500
    after = scrape(client)
    assert delta(before, after, "svi_webhook_apologies_total", endpoint="ivr.step") == 1
    assert delta(before, after, "svi_http_server_errors_total", endpoint="test_broken") == 1
    # The malformed step is no label: only the flow's step names are.
    assert delta(before, after, "svi_webhook_duration_seconds_count", endpoint="ivr.step",
                 step="") == 1


def test_metrics_are_read_from_allowed_addresses_or_with_the_token(app):
    guarded = create_app({**{k: app.config[k] for k in ("DATABASE_URL", "JOURNAL_DIR")},
                          "METRICS_TOKEN": "a-long-random-metrics-token",
                          "METRICS_ALLOWED_IPS": "127.0.0.1,10.9.0.0/16",
                          "TRUSTED_PROXIES": "127.0.0.1"})
    try:
        client = guarded.test_client()

        def status(peer="127.0.0.1", **headers):
            return client.get("/metrics", headers=headers,
                              environ_base={"REMOTE_ADDR": peer}).status_code
        assert status() == 200 and status("10.9.3.4") == 200  # Prometheus, direct
        assert status("198.51.100.9") == 403
        # Relayed by the proxy (even a trusted one, even for an allowed client): never by address.
        assert status(**{"X-Forwarded-For": "10.9.3.4"}) == 403
        assert status("198.51.100.9", **{"X-Forwarded-For": "127.0.0.1"}) == 403
        assert status("198.51.100.9", Authorization="Bearer a-long-random-metrics-token") == 200
        assert status(**{"X-Forwarded-For": "203.0.113.5",
                         "Authorization": "Bearer a-long-random-metrics-token"}) == 200
        assert status("198.51.100.9", Authorization="Bearer wrong") == 403
        assert status("198.51.100.9", Authorization="Basic a-long-random-metrics-token") == 403
        refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "198.51.100.9"})
        assert "Accès refusé" in refused.get_data(as_text=True) and b"svi_" not in refused.data
    finally:
        core_db.dispose(guarded)


def test_the_journal_backlog_is_read_from_the_journal_files(app, tmp_path):
    folder = tmp_path / "journal"
    other = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "JOURNAL_DIR": str(folder)})
    try:
        client = other.test_client()
        found = scrape(client)
        assert value(found, "svi_journal_backlog_records") == 0
        folder.mkdir()
        # Journals of two processes (records the database could not take), one set aside.
        (folder / "4242-0a0b0c0d.jsonl").write_text('{"id": "1"}\n{"id": "2"}\n{"id": "3"}\n')
        (folder / "4343-0e0f0a0b.jsonl").write_text('{"id": "4"}\n')
        (folder / "4444-00000000.jsonl").write_text("")  # replayed and truncated
        (folder / "rejected.jsonl").write_text('{"id": "5"}\n')
        found = scrape(client)
        assert value(found, "svi_journal_backlog_records") == 4
        assert value(found, "svi_journal_backlog_files") == 2
        assert value(found, "svi_journal_rejected_records") == 1
    finally:
        core_db.dispose(other)


def test_job_runs_are_counted_by_job_and_result(app):
    client = app.test_client()
    before = scrape(client)
    runner = app.test_cli_runner()
    for _ in range(2):  # the second run of the day finds it done
        assert runner.invoke(args=["scheduler", "run-job", "tickets-auto-close"]).exit_code == 0
    after = scrape(client)
    assert delta(before, after, "svi_job_runs_total", job="tickets-auto-close", result="done") == 1
    assert delta(before, after, "svi_job_runs_total", job="tickets-auto-close",
                 result="skipped") == 1
    assert value(after, "svi_job_last_success_timestamp_seconds", job="tickets-auto-close") > 0


def test_the_scheduler_serves_its_own_metrics(app, tmp_path):
    from bench.servers import free_port
    port = free_port()
    scheduler = create_app({"DATABASE_URL": app.config["DATABASE_URL"],
                            "JOURNAL_DIR": app.config["JOURNAL_DIR"],
                            "SCHEDULER_METRICS_BIND": f"127.0.0.1:{port}",
                            "METRICS_TOKEN": "scheduler-metrics-token",
                            "METRICS_ALLOWED_IPS": "10.0.0.1"})  # not loopback: token only
    server = observability.serve_scheduler_metrics(scheduler)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 403
        req = urllib.request.Request(url, headers={"Authorization": "Bearer scheduler-metrics-token"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
        assert "svi_job_runs_total" in text and "svi_journal_backlog_records" in text
    finally:
        server.shutdown()
        server.server_close()
        core_db.dispose(scheduler)


# -- multi-process mode under gunicorn ----------------------------------------------------------
def test_two_gunicorn_workers_sum_their_metrics(pg_cluster, tmp_path):
    """Signed calls spread over two workers (one thread each, four callers at once): /metrics,
    whichever worker answers it, counts every call; a worker that exits keeps its counts."""
    url = pg_cluster.create_database("svi_metrics")
    env = app_env(url, tmp_path)
    flask(env, "setup")
    with gunicorn(env, tmp_path / "server.log", workers=2, name="two") as server:
        twilio = Emulator(HttpTransport(f"http://127.0.0.1:{server.port}", PUBLIC_BASE),
                          auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)

        def place(i: int):
            return twilio.call(caller=f"+3361234{i:04d}", keys=["75", "1", "2"], at=OPEN,
                               referents=[Referent("accept")])
        calls, served = [], set()
        with ThreadPoolExecutor(4) as pool:
            while len(served) < 2 and len(calls) < 48:  # both workers answered some
                calls += pool.map(place, range(len(calls), len(calls) + 8))
                served = {line["pid"] for line in log_lines(server)
                          if line.get("endpoint") == "ivr.voice"}
        assert len(served) == 2, "the calls never reached the second worker"
        assert all(t.dialled == [["+33199007501", "+33199007502"]] for t in calls)
        requests = sum(len(t.requests) for t in calls)

        def check():
            status, text = get(server, "/metrics")
            assert status == 200
            found = samples(text)
            assert value(found, "svi_calls_total", outcome="answered", departement="75") == len(calls)
            assert value(found, "svi_webhook_duration_seconds_count", endpoint="ivr.voice",
                         step="welcome") == len(calls)
            assert sum(v for (name, _), v in found.items()
                       if name == "svi_webhook_duration_seconds_count") == requests
        for _ in range(4):  # answered by either worker
            check()
        leaving = sorted(served)[0]
        os.kill(leaving, signal.SIGTERM)  # gunicorn replaces it (child_exit: its gauges go)
        deadline = time.monotonic() + 30
        while (leaving in server.workers() or len(server.workers()) < 2) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert leaving not in server.workers() and len(server.workers()) == 2
        check()  # its counters still count
        assert server.logged_errors() == 0, server.log_tail()
