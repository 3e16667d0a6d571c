"""What an operator watches: access log lines, Prometheus metrics, the readiness probe.

Per request (Flask hooks, a few microseconds): one access log line (core/logs.py) and, for a
Twilio webhook, one observation of its latency histogram; 5xx answers are counted. Metric
labels are bounded and never personal: endpoint names (never raw URLs), flow step names known
to the flow file, outcome names, département codes, job names. Never a phone number, a CallSid
or anything a caller typed.

Metrics under gunicorn use prometheus_client's multi-process mode: PROMETHEUS_MULTIPROC_DIR is
set (deploy/gunicorn.conf.py) before any worker imports this module, each worker writes its
values to its own files there, and /metrics sums them. Without it (`flask run`, tests) the
values live in the process.

/metrics answers the addresses of METRICS_ALLOWED_IPS when they connect directly (a request
relayed by a proxy never qualifies by its address) and anyone with `Authorization: Bearer
<METRICS_TOKEN>`; everyone else gets 403.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from pathlib import Path

from flask import Flask, Response, current_app, request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from core.db import DB_UNAVAILABLE
from core.logs import mask_numbers, request_sids
from core.proxy import FORWARDED_KEYS, AddressSet, parse_networks

access_log = logging.getLogger("svi.access")
log = logging.getLogger("svi.observability")

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# -- metrics ----------------------------------------------------------------------------------
WEBHOOK_SECONDS = Histogram(
    "svi_webhook_duration_seconds", "Time to answer a Twilio webhook, by endpoint and flow step.",
    ["endpoint", "step"],
    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
REQUEST_SECONDS = Histogram(
    "svi_http_request_duration_seconds", "Time to answer a web page or API request, by endpoint.",
    ["endpoint"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
SERVER_ERRORS = Counter(
    "svi_http_server_errors_total", "Requests answered with a 5xx status, by endpoint.",
    ["endpoint"])
WEBHOOK_APOLOGIES = Counter(
    "svi_webhook_apologies_total",
    "Webhooks that failed and answered the caller with the technical apology (200 TwiML).",
    ["endpoint"])
CALLS = Counter(
    "svi_calls_total", "Calls ended, by outcome and département (as recorded at the hang-up; "
    "the service's indicators are authoritative).", ["outcome", "departement"])
JOB_RUNS = Counter("svi_job_runs_total", "Scheduler job runs, by job and result "
                   "(done, skipped, failed).", ["job", "result"])
JOB_SECONDS = Histogram("svi_job_duration_seconds", "Duration of scheduler job runs.", ["job"],
                        buckets=(.1, .5, 1, 5, 15, 60, 300, 900, 3600))
JOB_LAST_SUCCESS = Gauge("svi_job_last_success_timestamp_seconds",
                         "When each job last ran to completion (Unix time).", ["job"],
                         multiprocess_mode="max")

#: Endpoints that are neither timed nor logged at INFO: probes and scrapes (noise).
QUIET_ENDPOINTS = frozenset({"healthz", "readyz", "metrics"})
#: Endpoints not timed at all (static files are served by the proxy in production).
UNTIMED_ENDPOINTS = QUIET_ENDPOINTS | {"static"}
#: Label of a request no route matched (404 of any URL): never the raw path.
UNMATCHED = "unmatched"


# -- per-request hooks ------------------------------------------------------------------------
class _Observer:
    """The app's request hooks, with the histogram children memoized by label."""

    def __init__(self, app: Flask):
        self.app = app
        self.steps = frozenset(app.extensions["svi.flow"].steps)
        self.start_step = app.extensions["svi.flow"].start
        self._webhook: dict[tuple[str, str], object] = {}
        self._page: dict[str, object] = {}

    def step_of(self, req, endpoint: str) -> str:
        """The flow step a webhook answers: only names of the flow file (bounded labels)."""
        if endpoint == "ivr.voice":
            return self.start_step
        step = req.args.get("s", "")
        return step if step in self.steps else ""

    def after(self, response):
        req = request._get_current_object()  # once: every proxied access costs
        t0 = req.environ.get("svi.t0")
        seconds = time.perf_counter() - t0 if t0 is not None else 0.0
        endpoint = req.endpoint or UNMATCHED
        status = response.status_code
        webhook = endpoint.startswith("ivr.")
        step = self.step_of(req, endpoint) if webhook else ""
        if endpoint not in UNTIMED_ENDPOINTS:
            if webhook:
                child = self._webhook.get((endpoint, step))
                if child is None:
                    child = self._webhook[(endpoint, step)] = WEBHOOK_SECONDS.labels(endpoint, step)
            else:
                child = self._page.get(endpoint)
                if child is None:
                    child = self._page[endpoint] = REQUEST_SECONDS.labels(endpoint)
            child.observe(seconds)
        if status >= 500:
            SERVER_ERRORS.labels(endpoint).inc()
        level = logging.DEBUG if endpoint in QUIET_ENDPOINTS and status < 400 else logging.INFO
        if access_log.isEnabledFor(level):
            log_request(req, level, endpoint, status, seconds, step, webhook)
        return response


def log_request(req, level: int, endpoint: str, status: int, seconds: float, step: str,
                webhook: bool) -> None:
    """The access line (core/logs.py formats it). Built by hand rather than through
    `Logger.log`, which would look up the caller's frame on every request."""
    # A webhook's path is one of the routes' (matched): nothing to mask there.
    path = req.path if webhook and endpoint != UNMATCHED else mask_numbers(req.path)
    fields = {"event": "request", "method": req.method, "endpoint": endpoint, "path": path,
              "status": status, "duration_ms": round(seconds * 1000, 2)}
    message = f"{req.method} {path} {status} {fields['duration_ms']} ms"
    if webhook:
        sids = request_sids(req)
        if sids:
            fields.update(sids)
            message = f"{message} {sids.get('call_sid', '')}"
        if step:
            fields["step"] = step
    record = access_log.makeRecord(access_log.name, level, "", 0, message, None, None,
                                   extra={"svi": fields})
    access_log.handle(record)


def webhook_failed() -> None:
    """A webhook handler failed and the caller heard the apology (ivr.service)."""
    WEBHOOK_APOLOGIES.labels(request.endpoint or UNMATCHED).inc()


# -- calls by outcome: counted once the hang-up is committed ------------------------------------
_ENDED = "svi.calls_ended"


def call_ended(session, call) -> None:
    """The hang-up of `call` is being recorded in `session`: counted if that commits.

    A record whose transaction fails is journaled and replayed, counted then (by the process
    that replays it); a test call (the web simulator's) is not counted."""
    if getattr(call, "test", False):
        return
    outcome = call.outcome.name if call.outcome is not None else "unknown"
    session.info.setdefault(_ENDED, []).append((outcome, call.departement_code or "none"))


def watch_sessions(factory) -> None:
    """Count the hang-ups of the sessions of `factory` when they commit."""

    @event.listens_for(factory, "after_commit")
    def _committed(session):
        ended = session.info.pop(_ENDED, None)
        if ended:
            for outcome, departement in ended:
                CALLS.labels(outcome, departement).inc()

    @event.listens_for(factory, "after_rollback")
    def _rolled_back(session):
        session.info.pop(_ENDED, None)


# -- scheduler jobs ---------------------------------------------------------------------------
def counted_job(run_job):
    """Decorate scheduler.jobs.run_job: each run counted by job and result, and timed."""

    def run(app, job, period, work):
        started = time.monotonic()
        result = run_job(app, job, period, work)
        JOB_RUNS.labels(job, result.status).inc()
        if result.status != "skipped":
            JOB_SECONDS.labels(job).observe(time.monotonic() - started)
        if result.status == "done":
            JOB_LAST_SUCCESS.labels(job).set(time.time())
        return result
    run.__doc__, run.__name__, run.__wrapped__ = run_job.__doc__, run_job.__name__, run_job
    return run


# -- journal backlog --------------------------------------------------------------------------
def _count_lines(path: Path) -> int:
    lines = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
    except OSError:  # deleted meanwhile by a replay
        return 0
    return lines


class JournalCollector:
    """The call records waiting in the journals of JOURNAL_DIR (tracking/journal.py), read at
    scrape time from the files: every process's, a dead worker's too, whatever answers the
    scrape. The folder is per host: take the max, not the sum, across a host's instances."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def collect(self):
        from tracking.journal import REJECTED
        backlog, files, rejected = 0, 0, 0
        for path in self.folder.glob("*.jsonl"):
            lines = _count_lines(path)
            if path.name == REJECTED:
                rejected += lines
            elif lines:
                backlog, files = backlog + lines, files + 1
        yield GaugeMetricFamily("svi_journal_backlog_records", "Call records journaled while "
                                "the database could not take them, not yet replayed (this host).",
                                value=backlog)
        yield GaugeMetricFamily("svi_journal_backlog_files", "Journal files holding records "
                                "not yet replayed (one per process).", value=files)
        yield GaugeMetricFamily("svi_journal_rejected_records", "Journaled records no replay "
                                "could apply, set aside for the operator (rejected.jsonl).",
                                value=rejected)


def exposition(journal_dir: str) -> bytes:
    """The metrics text: this process's (or, under gunicorn, every worker's, summed) and the
    journal backlog."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY
        body = generate_latest(REGISTRY)
    journal = CollectorRegistry()
    journal.register(JournalCollector(journal_dir))
    return body + generate_latest(journal)


class MetricsAccess:
    """Who may read the metrics: METRICS_TOKEN holders, and METRICS_ALLOWED_IPS peers that
    connect directly (no X-Forwarded-* header, see core/proxy.py)."""

    def __init__(self, config: dict):
        self.token = str(config["METRICS_TOKEN"] or "")
        self.addresses = AddressSet(parse_networks(config["METRICS_ALLOWED_IPS"]))

    def allows(self, environ: dict) -> bool:
        scheme, _, secret = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if self.token and scheme.lower() == "bearer" and hmac.compare_digest(
                secret.strip().encode(), self.token.encode()):
            return True
        if environ.get("svi.forwarded") or any(key in environ for key in FORWARDED_KEYS):
            return False
        peer = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR") \
            or environ.get("REMOTE_ADDR")
        return peer in self.addresses


def _refused() -> Response:
    return Response("Accès refusé : métriques réservées (voir METRICS_ALLOWED_IPS et "
                    "METRICS_TOKEN).\n", status=403, mimetype="text/plain",
                    headers={"WWW-Authenticate": "Bearer"})


# -- readiness --------------------------------------------------------------------------------
class Schema:
    """The migration scripts' heads and every revision they know (read once per process)."""

    def __init__(self, url: str):
        from alembic.script import ScriptDirectory
        from core.cli import alembic_config
        script = ScriptDirectory.from_config(alembic_config(url))
        self.heads = frozenset(script.get_heads())
        self.known = frozenset(rev.revision for rev in script.walk_revisions())


def _schema(app: Flask) -> Schema:
    schema = app.extensions.get("svi.schema")
    if schema is None:
        schema = app.extensions["svi.schema"] = Schema(app.config["DATABASE_URL"])
    return schema


_VERSION = text("SELECT version_num FROM alembic_version")


def readiness(app: Flask) -> tuple[int, dict]:
    """(200, …) when the database answers and its schema is at the code's migration head (or
    newer: a rolling upgrade ran the next release's migrations first); (503, reason) otherwise.

    One short query on the voice path's engine (its connect and statement timeouts are short)."""
    schema = _schema(app)
    try:
        with app.extensions["svi.voice_engine"].connect() as conn:
            versions = frozenset(conn.execute(_VERSION).scalars())
    except DB_UNAVAILABLE as exc:
        if "alembic_version" in str(exc):  # SQLite: no such table
            return 503, {"status": "unavailable", "reason": "schéma absent : migrations jamais "
                         "appliquées (flask --app app db upgrade)"}
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        return 503, {"status": "unavailable", "reason": "base de données injoignable"}
    except DBAPIError:  # PostgreSQL: relation "alembic_version" does not exist
        return 503, {"status": "unavailable", "reason": "schéma absent : migrations jamais "
                     "appliquées (flask --app app db upgrade)"}
    if versions == schema.heads:
        return 200, {"status": "ok", "schema": ",".join(sorted(versions))}
    if not versions:
        return 503, {"status": "unavailable", "reason": "schéma absent : migrations jamais "
                     "appliquées (flask --app app db upgrade)"}
    if versions <= schema.known:
        return 503, {"status": "unavailable",
                     "reason": f"migrations en retard : base à {','.join(sorted(versions))}, "
                               f"code à {','.join(sorted(schema.heads))} "
                               "(flask --app app db upgrade)",
                     "schema": ",".join(sorted(versions))}
    return 200, {"status": "ok", "schema": ",".join(sorted(versions)),
                 "note": "schéma plus récent que ce code (mise à jour en cours ?)"}


# -- wiring -----------------------------------------------------------------------------------
def init_app(app: Flask) -> None:
    """Request hooks (first before, last after every other), /readyz and /metrics."""
    observer = _Observer(app)
    # after_request functions run in reverse order: first in the list, last to run, so the
    # status logged is the one sent.
    app.after_request_funcs.setdefault(None, []).insert(0, observer.after)
    watch_sessions(app.extensions["svi.sessionmaker"])
    watch_sessions(app.extensions["svi.voice_sessionmaker"])
    access = MetricsAccess(app.config)

    @app.get("/readyz")
    def readyz():
        """Readiness probe: database reachable and migrations at head."""
        status, body = readiness(current_app._get_current_object())
        return body, status

    @app.get("/metrics")
    def metrics():
        """Prometheus metrics (METRICS_ALLOWED_IPS peers, or the METRICS_TOKEN bearer)."""
        if not access.allows(request.environ):
            return _refused()
        return Response(exposition(current_app.config["JOURNAL_DIR"]),
                        mimetype=CONTENT_TYPE_LATEST)


def serve_scheduler_metrics(app: Flask):
    """The scheduler's /metrics on SCHEDULER_METRICS_BIND (host:port), same access rules, in
    a daemon thread; the server (`shutdown()` stops it), None when the setting is empty."""
    bind = str(app.config.get("SCHEDULER_METRICS_BIND") or "")
    if not bind:
        return None
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    host, _, port = bind.rpartition(":")
    access = MetricsAccess(app.config)
    journal_dir = app.config["JOURNAL_DIR"]

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not access.allows(environ):
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("WWW-Authenticate", "Bearer")])
            return ["Accès refusé\n".encode()]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [exposition(journal_dir)]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # one line per scrape is noise
            pass

    server = make_server(host.strip("[]") or "127.0.0.1", int(port), wsgi, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="svi-scheduler-metrics",
                              daemon=True)
    thread.start()
    log.info("métriques du planificateur sur http://%s/metrics", bind)
    return server
