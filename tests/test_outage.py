"""The phone line keeps working, and recording, when PostgreSQL stops or a worker dies (issue 12).

The real app runs under gunicorn (2 sync workers) on a throwaway PostgreSQL. A bounded load
places calls through the signed webhooks from a thread pool on loopback, following the TwiML as
Twilio does (`bench/callers.py`): the welcome, the département's digits, the <Dial> with the
referent's whisper and the legs' status callbacks, the dial result, a voicemail or a callback
request, the call's status callback; some callers hang up in the menu or while it rings.

- PostgreSQL is stopped (`pg_ctl stop -m fast`) for 30 s in the middle of the load, then started
  again: every webhook is answered 200 with TwiML, every caller of an open département is put
  through to its lines (the directory each worker holds), nobody hears the technical apology;
  once the journals are replayed the database holds every call placed exactly once, with the
  outcome, legs, events (in order), solicitation and tickets of its scenario — the same records
  as the calls of that scenario made while the database was up. No journal is left, nothing is
  set aside.
- During another outage a worker is killed (`kill -9`) while it holds a request: gunicorn starts
  another, the dead worker's journal is replayed by the new one at start-up, and the caller whose
  request was cut gets what Twilio gives (the Fallback URL's apology): every call still ends up in
  the database exactly once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import create_engine, func, select

from bench.callers import (SCENARIOS, Twilio, call_problems, comparable, expected_dials,
                           open_all_day, run_load, stored_calls, twiml_problems)
from bench.load import AUTH_TOKEN, PUBLIC_BASE_URL
from bench.servers import Gunicorn, app_env, setup_database
from devtools.pgcluster import Cluster
from ivr.simulator import new_sid
from tracking.journal import REJECTED

pytestmark = pytest.mark.fault

#: Départements of the demo directory the callers ask for, open whenever the test runs.
OPEN = ("75", "93", "57", "2A")
#: Asked for only once the database is down: a worker must hold the whole directory, not only
#: the départements it happened to route before.
ONLY_DURING_OUTAGE = {"ringing-hangup-57", "answered-2A"}
WEIGHTS = {"answered-75": 4, "voicemail-93": 2, "callback-93": 1, "menu-hangup": 1,
           "ringing-hangup-57": 1, "answered-2A": 2, "no-assistance-974": 1}
#: Calls placed per second (each is 3 to 14 webhooks).
RATE = 4
#: Longest wait for the journals to be replayed once the database is back.
REPLAY_TIMEOUT = 180


@pytest.fixture(scope="module")
def cluster():
    """A PostgreSQL cluster of this module's own: the tests stop and start it."""
    pg = Cluster(port=int(os.environ.get("SVI_TEST_PG_PORT", "54329")) + 1).start()
    yield pg
    pg.stop()


def fresh_database(cluster: Cluster, name: str) -> str:
    """A migrated database with the 101 départements and the demo lines (`flask setup`), the
    callers' départements open all day."""
    url = cluster.create_database(name)
    setup_database(url)
    open_all_day(url, OPEN)
    return url


def server_env(url: str, tmp_path: Path) -> dict[str, str]:
    env = app_env(url)
    env.pop("FLASK_RUN_FROM_CLI", None)  # set by a `flask` command run earlier in this process
    env.update(JOURNAL_DIR=str(tmp_path / "journal"), MAIL_OUTBOX_DIR=str(tmp_path / "outbox"),
               WORKBOOK_STORAGE_DIR=str(tmp_path / "workbooks"), LOG_LEVEL="INFO")
    return env


def chooser(rng, outage_began: threading.Event):
    """Scenarios in a cycle of WEIGHTS' proportions (shuffled once), so that each one is placed
    within a few seconds whatever the timing, before, during and after the outage; those of
    ONLY_DURING_OUTAGE once the outage has begun."""
    cycle = [name for name, weight in WEIGHTS.items() for _ in range(weight)]
    rng.shuffle(cycle)
    turn = iter(range(10 ** 9))

    def choose(_elapsed):
        while True:
            name = cycle[next(turn) % len(cycle)]
            if outage_began.is_set() or name not in ONLY_DURING_OUTAGE:
                return SCENARIOS[name]
    return choose


class Outage(threading.Thread):
    """Stops PostgreSQL `stop_at` seconds after it starts, starts it again `seconds` later;
    `during()` runs once, half-way through the outage. `window`: when the outage began (the
    stop asked) and ended (the server accepting connections again), monotonic seconds."""

    def __init__(self, cluster: Cluster, stop_at: float, seconds: float, during=None):
        super().__init__(name="outage", daemon=True)
        self.cluster, self.stop_at, self.seconds, self.during = cluster, stop_at, seconds, during
        self.began, self.window, self.error = threading.Event(), [None, None], None

    def run(self) -> None:
        try:
            started = time.monotonic()
            time.sleep(self.stop_at)
            self.window[0] = time.monotonic()
            self.began.set()
            self.cluster.halt("fast")
            time.sleep(self.seconds / 2)
            if self.during is not None:
                self.during()
            time.sleep(max(0.0, started + self.stop_at + self.seconds - time.monotonic()))
            self.cluster.resume()
            self.window[1] = time.monotonic()
        except Exception as exc:  # reported by the test
            self.error = exc
            self.began.set()


def journal_lines(folder: Path) -> dict[str, int]:
    """Lines waiting in each journal of `folder` (rejected records apart)."""
    return {p.name: len(p.read_bytes().splitlines()) for p in folder.glob("*.jsonl")
            if p.name != REJECTED}


def wait_for_replay(url: str, sids: set[str], folder: Path) -> tuple[dict[str, dict], float]:
    """Poll (bounded) until every call is stored, nothing waits apart and the journals are
    empty; returns the stored calls and when (monotonic seconds)."""
    from tracking.models import UnmatchedCallback
    deadline, engine = time.monotonic() + REPLAY_TIMEOUT, create_engine(url)
    try:
        while True:
            with engine.connect() as conn:
                unmatched = conn.scalar(select(func.count()).select_from(UnmatchedCallback))
            stored = stored_calls(url, sids)
            waiting = sum(journal_lines(folder).values())
            if (set(stored) == sids and not unmatched and not waiting) \
                    or time.monotonic() > deadline:
                return stored, time.monotonic()
            time.sleep(1)
    finally:
        engine.dispose()


def check_calls(placed, stored, dials, *, outage_window, cut_sids=frozenset()) -> None:
    """Every call placed is stored once, as its scenario says; the calls made during the outage
    are stored as those made while the database was up."""
    errors = [(p.transcript.call_sid, p.error) for p in placed if p.error]
    assert not errors, f"calls stopped on the caller's side: {errors[:5]}"
    sids = {p.transcript.call_sid for p in placed}
    assert len(sids) == len(placed)
    assert set(stored) == sids, (f"missing: {sorted(sids - set(stored))[:5]}, "
                                 f"unexpected: {sorted(set(stored) - sids)[:5]}")
    reference: dict[str, dict] = {}
    for p in placed:
        sid, s = p.transcript.call_sid, p.scenario
        if not (p.ended < outage_window[0] or p.started > outage_window[1]) or sid in cut_sids:
            continue
        reference.setdefault(s.name, comparable(stored[sid]))
    assert set(reference) == set(SCENARIOS), \
        f"scenarios without a call made while the database was up: {set(SCENARIOS) - set(reference)}"
    during, problems = 0, []
    for p in placed:
        sid, s = p.transcript.call_sid, p.scenario
        record, cut = stored[sid], sid in cut_sids
        when = f" ({p.started - outage_window[0]:+.1f} s to {p.ended - outage_window[0]:+.1f} s)"
        problems += call_problems(p, record, dials, cut=cut, when=when)
        if not cut and comparable(record) != reference[s.name]:
            diff = {k: (v, reference[s.name].get(k)) for k, v in comparable(record).items()
                    if v != reference[s.name].get(k)}
            problems.append(f"{s.name} {sid}{when}: differs from the same call made with the "
                            f"database up: {diff}")
        during += outage_window[0] <= p.started <= outage_window[1]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])
    assert during >= 20, f"only {during} calls placed while the database was down"
    return during


def report(placed, during, url, replayed_at, outage_window) -> None:
    """The test's figures (shown with -s): no timing is asserted."""
    print(f"\n{len(placed)} calls placed, {during} while the database was down "
          f"({outage_window[1] - outage_window[0]:.0f} s); {len(replayed_ids(url))} records "
          f"journaled and replayed, the last {replayed_at - outage_window[1]:.0f} s after the "
          "restart")


def replayed_ids(url: str) -> set[str]:
    from tracking.models import JournalReplay
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(select(JournalReplay.id)))
    finally:
        engine.dispose()


def test_database_stopped_for_30_s_under_load(cluster, tmp_path):
    url = fresh_database(cluster, "outage")
    dials, folder = expected_dials(url), tmp_path / "journal"
    rng = random.Random(12)
    with Gunicorn("app:create_app()", server_env(url, tmp_path), ["--workers", "2"],
                  tmp_path / "gunicorn.log") as server:
        twilio = Twilio([f"http://127.0.0.1:{server.port}"], auth_token=AUTH_TOKEN,
                        public_base=PUBLIC_BASE_URL, rng=rng)
        outage = Outage(cluster, stop_at=20, seconds=30)
        outage.start()
        placed = run_load(twilio, seconds=70, rate=RATE, choose=chooser(rng, outage.began))
        outage.join(timeout=60)
        assert outage.error is None and outage.window[1] is not None, outage.error
        stored, replayed_at = wait_for_replay(url, {p.transcript.call_sid for p in placed},
                                              folder)
        log = server.log.read_text(errors="replace")
    assert not twiml_problems(twilio), twiml_problems(twilio)[:5]
    assert not twilio.cut, twilio.cut[:5]
    during = check_calls(placed, stored, dials, outage_window=outage.window)
    report(placed, during, url, replayed_at, outage.window)
    assert len(replayed_ids(url)) > 100, "the outage must have sent records through the journal"
    assert journal_lines(folder) == {}, "journals left behind"
    assert not (folder / REJECTED).exists(), (folder / REJECTED).read_text()[:2000]
    for marker in ("Traceback", "LOST", "tracking failed", "webhook /ivr/"):
        assert marker not in log, log[log.index(marker) - 2000:][:4000]


# -- a worker killed while it holds a request ---------------------------------------------------
def _hex_address(port: int) -> str:
    return f"0100007F:{port:04X}"


def worker_holding(sock: socket.socket, server_port: int, workers: list[int],
                   timeout: float = 10) -> int:
    """The worker process whose accepted socket is the other end of `sock` (the kernel's TCP
    table, then the workers' file descriptors)."""
    local, remote = _hex_address(server_port), _hex_address(sock.getsockname()[1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = {fields[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                  if (fields := line.split())[1] == local and fields[2] == remote}
        for pid in workers:
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return pid
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no worker accepted the request")


class KillingTwilio(Twilio):
    """Twilio's side, where the first département entry of the call `victim` is sent only in
    part; the worker holding it is then killed (`kill -9`), so the request fails at the
    connection as Twilio would see it (Twilio then fetches the Fallback URL)."""

    def __init__(self, *args, server: Gunicorn, journal: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.server, self.journal, self.victim = server, journal, None
        self.killed: dict = {}

    def post_http(self, url, params, headers):
        parts = urlsplit(url)
        if params.get("CallSid") != self.victim or parts.path != "/ivr/step" or self.killed:
            return super().post_http(url, params, headers)
        body = urlencode(params).encode()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as sock:
            sock.sendall(head + body[:len(body) // 2])  # the worker waits for the rest
            pid = worker_holding(sock, self.server.port, self.server.workers())
            self.killed = {"pid": pid, "journals": {
                p.name: [json.loads(line)["id"] for line in p.read_bytes().splitlines()]
                for p in self.journal.glob(f"{pid}-*.jsonl")}}
            os.kill(pid, signal.SIGKILL)
            try:
                answer = sock.recv(1024)
            except OSError as exc:
                raise ConnectionError(f"connection reset: {exc}") from exc
            assert answer == b"", answer[:200]
            raise ConnectionError("connection closed without an answer")


def test_a_worker_killed_during_an_outage(cluster, tmp_path):
    url = fresh_database(cluster, "killed")
    dials, folder = expected_dials(url), tmp_path / "journal"
    rng = random.Random(9)
    with Gunicorn("app:create_app()", server_env(url, tmp_path), ["--workers", "2"],
                  tmp_path / "gunicorn.log") as server:
        twilio = KillingTwilio([f"http://127.0.0.1:{server.port}"], auth_token=AUTH_TOKEN,
                               public_base=PUBLIC_BASE_URL, rng=rng, server=server,
                               journal=folder)
        before = set(server.workers())
        victim = {}

        def call_and_kill():
            twilio.victim = new_sid()
            victim["placed"] = twilio.place(SCENARIOS["answered-75"], "+33699999999",
                                            call_sid=twilio.victim)

        outage = Outage(cluster, stop_at=5, seconds=12, during=call_and_kill)
        outage.start()
        placed = run_load(twilio, seconds=25, rate=RATE, choose=chooser(rng, outage.began))
        outage.join(timeout=60)
        assert outage.error is None and outage.window[1] is not None, outage.error
        assert twilio.killed, "no worker was killed"
        placed.append(victim["placed"])
        stored, replayed_at = wait_for_replay(url, {p.transcript.call_sid for p in placed},
                                              folder)
        after = set(server.workers())
        log = server.log.read_text(errors="replace")
    killed = twilio.killed
    assert killed["pid"] in before and killed["pid"] not in after and len(after) == 2
    orphaned = [i for ids in killed["journals"].values() for i in ids]
    assert orphaned, "the killed worker held records in its journal"
    assert set(orphaned) <= replayed_ids(url), "the dead worker's journal was not replayed"
    assert not any((folder / name).exists() for name in killed["journals"])
    assert [(urlsplit(url).path) for _, url, _ in twilio.cut] == ["/ivr/step"]
    sid = victim["placed"].transcript.call_sid
    assert stored[sid]["outcome"] == "error" and \
        [kind for kind, _, _ in stored[sid]["events"]] == ["step", "error", "status"]
    assert not twiml_problems(twilio), twiml_problems(twilio)[:5]
    during = check_calls(placed, stored, dials, outage_window=outage.window, cut_sids={sid})
    report(placed, during, url, replayed_at, outage.window)
    assert journal_lines(folder) == {}, "journals left behind"
    assert not (folder / REJECTED).exists(), (folder / REJECTED).read_text()[:2000]
    assert "journal d'un processus disparu" in log
