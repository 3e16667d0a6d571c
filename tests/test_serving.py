"""Serving behind a reverse proxy: X-Forwarded-* honoured only from TRUSTED_PROXIES, Twilio's
signatures still valid behind the proxy; the gunicorn configuration file (deploy/)."""

from __future__ import annotations

import gc
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import request

from app import create_app
from core import db as core_db
from core.settings import SettingsError
from ivr.simulator import Emulator
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from web import policy

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "gunicorn.conf.py"
FORGED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
          "X-Forwarded-Host": "svi.example.gouv.fr"}


@pytest.fixture
def sqlite_app(database_urls, tmp_path):
    """Settings of an app on the tests' SQLite database (proxy headers do not depend on it)."""
    return {"DATABASE_URL": database_urls("sqlite"), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SECRET_KEY": "test-secret", "JOURNAL_DIR": str(tmp_path / "journal"),
            "SVI_CALLER_ID": "+33806000156", "MAIL_OUTBOX_DIR": str(tmp_path / "outbox")}


def _app(config: dict, **overrides):
    """An app with `overrides`, and a page that shows how it sees the request."""
    other = create_app({**config, **overrides})

    @policy.allow(policy.public)
    def peer():
        return {"remote_addr": request.remote_addr, "url": request.url,
                "scheme": request.scheme, "forwarded": request.headers.get("X-Forwarded-For")}
    other.add_url_rule("/_peer", "test_peer", peer)
    return other


def test_forwarded_headers_of_an_untrusted_peer_are_dropped(sqlite_app):
    for trusted in ("", "10.0.0.0/8"):
        proxied = _app(sqlite_app, TRUSTED_PROXIES=trusted)
        try:
            seen = proxied.test_client().get("/_peer", headers=FORGED,
                                             environ_base={"REMOTE_ADDR": "198.51.100.9"}).get_json()
            assert seen == {"remote_addr": "198.51.100.9", "url": "http://localhost/_peer",
                            "scheme": "http", "forwarded": None}
        finally:
            core_db.dispose(proxied)


def test_forwarded_headers_of_a_trusted_proxy_are_honoured(sqlite_app):
    proxied = _app(sqlite_app, TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1")
    try:
        for peer in ("10.1.2.3", "127.0.0.1"):
            seen = proxied.test_client().get("/_peer", headers=FORGED,
                                             environ_base={"REMOTE_ADDR": peer}).get_json()
            assert seen["remote_addr"] == "203.0.113.7"
            assert seen["url"] == "https://svi.example.gouv.fr/_peer" and seen["scheme"] == "https"
        # Without the headers, a request from the proxy is taken as it comes.
        seen = proxied.test_client().get("/_peer", environ_base={"REMOTE_ADDR": "10.1.2.3"}).get_json()
        assert seen["remote_addr"] == "10.1.2.3" and seen["scheme"] == "http"
    finally:
        core_db.dispose(proxied)


class _Proxy:
    """The test client seen through a reverse proxy at `peer` that forwards https and the
    public host, as nginx does (deploy/nginx/svi.conf)."""

    def __init__(self, app, peer: str):
        self.client, self.peer = app.test_client(), peer

    def post(self, url: str, params: dict, headers: dict):
        path = url.removeprefix(PUBLIC_BASE)
        resp = self.client.post(path, data=params, environ_base={"REMOTE_ADDR": self.peer},
                                headers={**headers, "Host": "127.0.0.1:8001",
                                         "X-Forwarded-For": "54.172.60.1",
                                         "X-Forwarded-Proto": "https",
                                         "X-Forwarded-Host": "svi.example.gouv.fr"})
        return resp.status_code, resp.get_data(as_text=True)


def test_twilio_signatures_validate_behind_a_trusted_proxy(sqlite_app):
    """Without PUBLIC_BASE_URL the signed URL is the request's own: right only when the proxy's
    headers are honoured. With PUBLIC_BASE_URL (required in production) it never depends on
    them."""
    cases = [("", "127.0.0.1", 200), ("", "198.51.100.9", 403),
             (PUBLIC_BASE, "127.0.0.1", 200), (PUBLIC_BASE, "198.51.100.9", 200)]
    for base, peer, expected in cases:
        proxied = _app(sqlite_app, TRUSTED_PROXIES="127.0.0.1", PUBLIC_BASE_URL=base)
        try:
            twilio = Emulator(_Proxy(proxied, peer), auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)
            t, _ = twilio.begin(caller="+33612345678", at="2026-12-21T10:00")  # %3A in the URL
            assert t.requests[0][2] == expected, (base, peer)
        finally:
            core_db.dispose(proxied)


def test_trusted_proxies_must_be_addresses_or_networks(sqlite_app):
    for wrong in ("nginx", "10.0.0.1/8", "127.0.0.1,,x"):
        with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
            _app(sqlite_app, TRUSTED_PROXIES=wrong)


# -- deploy/gunicorn.conf.py ----------------------------------------------------------------------
def _conf(monkeypatch, tmp_path, **env) -> dict:
    for name in ("WEB_BIND", "WEB_WORKERS", "WEB_THREADS", "TRUSTED_PROXIES", "LOG_FORMAT",
                 "PROMETHEUS_MULTIPROC_DIR", "INSTANCE_NAME", "SVI_ENV"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_gunicorn_configuration_reads_the_settings(monkeypatch, tmp_path):
    conf = _conf(monkeypatch, tmp_path, WEB_BIND="127.0.0.1:8002", WEB_WORKERS="3",
                 WEB_THREADS="2", TRUSTED_PROXIES="127.0.0.1,10.0.0.0/8", LOG_FORMAT="json")
    assert (conf["bind"], conf["workers"], conf["threads"]) == (["127.0.0.1:8002"], 3, 2)
    assert conf["worker_class"] == "gthread" and conf["preload_app"] is False
    assert conf["timeout"] < 15 <= conf["graceful_timeout"]  # Twilio waits 15 s for an answer
    assert conf["forwarded_allow_ips"] == "127.0.0.1,10.0.0.0/8"
    assert conf["accesslog"] is None and conf["control_socket_disable"] is True
    assert conf["logconfig_dict"]["formatters"]["svi"]["()"] == "core.logs.JsonFormatter"
    default = _conf(monkeypatch, tmp_path)
    assert default["forwarded_allow_ips"] == ""  # gunicorn's own default would trust 127.0.0.1
    assert 1 <= default["workers"] <= 8 and default["threads"] == 4


def test_gunicorn_start_empties_the_metrics_folder_and_names_the_instance(monkeypatch, tmp_path):
    folder = tmp_path / "metrics"
    (folder / "old").mkdir(parents=True)
    (folder / "counter_12345.db").write_bytes(b"stale")
    conf = _conf(monkeypatch, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(folder))
    conf["on_starting"](SimpleNamespace(cfg=SimpleNamespace(bind=["127.0.0.1:8003"])))
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert os.environ["INSTANCE_NAME"].endswith(":8003")
    (folder / "gauge_livesum_4242.db").write_bytes(b"")
    (folder / "counter_4242.db").write_bytes(b"")
    conf["child_exit"](None, SimpleNamespace(pid=4242))
    assert [p.name for p in folder.iterdir()] == ["counter_4242.db"]  # counters still count


def test_gunicorn_workers_freeze_what_start_up_built(monkeypatch, tmp_path):
    conf = _conf(monkeypatch, tmp_path)
    try:
        conf["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_gunicorn_configuration_refuses_a_bad_setting():
    env = {k: v for k, v in os.environ.items() if k != "TRUSTED_PROXIES"}
    run = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "--config",
                          str(CONF)], cwd=ROOT, env={**env, "TRUSTED_PROXIES": "proxy.local"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "TRUSTED_PROXIES" in run.stdout + run.stderr


def test_systemd_units_are_valid(tmp_path):
    """deploy/systemd's units pass `systemd-analyze verify`, pointed at this checkout."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    names = []
    for unit in (ROOT / "deploy" / "systemd").iterdir():
        name = unit.name.replace("@.", "@8001.")  # a template is checked as one instance
        (tmp_path / name).write_text(unit.read_text().replace("/opt/svi/current", str(ROOT)))
        names.append(str(tmp_path / name))
    run = subprocess.run([analyze, "verify", "--man=no", *sorted(names)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert run.returncode == 0 and not run.stdout.strip() and not run.stderr.strip(), \
        run.stdout + run.stderr
    assert len(names) == 6
