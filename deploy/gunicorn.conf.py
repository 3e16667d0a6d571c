"""gunicorn settings of the SVI web server.

    gunicorn --config deploy/gunicorn.conf.py 'app:create_app()'

(`make serve` and deploy/systemd/svi-web@.service run exactly that.) Read from the environment,
like the app's own settings (core/settings.py, .env.example): WEB_BIND, WEB_WORKERS,
WEB_THREADS, TRUSTED_PROXIES, LOG_FORMAT, LOG_LEVEL, PROMETHEUS_MULTIPROC_DIR, INSTANCE_NAME.
A setting given on gunicorn's command line (--bind, --workers…) wins over this file.

Choices:
- gthread workers, always (WEB_THREADS threads each, 1 allowed): a worker's heartbeat does not
  depend on how long one request takes, so `timeout` only catches a frozen worker, never a long
  export of the web interface. Every webhook bounds itself well below Twilio's 15 s (the voice
  path's database engine waits 1.5 s for a lock and 3 s for a statement, then journals).
- timeout 10 s, under Twilio's 15 s: a worker silent that long is killed and replaced while
  Twilio still waits for the other workers' answers.
- graceful_timeout 30 s: on SIGTERM or SIGHUP, requests in flight finish (a webhook takes
  milliseconds; a web export may be cut after 30 s). systemd's TimeoutStopSec is above it.
- preload_app off: each worker imports the app itself after the fork, so no database
  connection, thread or metrics file is ever shared across a fork, and `kill -HUP` (systemctl
  reload) starts workers on the new code with no downtime. The cost: each worker imports the
  app (about a second of CPU and some tens of MB not shared).
- forwarded_allow_ips = TRUSTED_PROXIES (gunicorn's default trusts 127.0.0.1): the app applies
  the same list to X-Forwarded-* (core/proxy.py); empty trusts no proxy at all.
- No gunicorn access log: the app writes one line per request itself (core/logs.py), with the
  CallSid and the IVR step.
- gc.freeze() once a worker has loaded the app (post_worker_init): the objects start-up built
  (modules, the app, the directory snapshot) leave the garbage collector's generations, so a
  full collection no longer walks them — tens of milliseconds each on this app, what made the
  web pages' p95 (bench/web.py --gc-freeze: README « Web pages »).
- Prometheus multi-process mode: PROMETHEUS_MULTIPROC_DIR (default instance/metrics/<port>) is
  emptied when the server starts, each worker writes there, a dead worker's live gauges are
  removed when gunicorn reaps it (child_exit). One directory per gunicorn server: two servers
  on one host need two directories (the systemd template uses /run/svi-web-<port>).
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # gunicorn started from elsewhere, or `--chdir` forgotten
    sys.path.insert(0, str(ROOT))

from core import logs as svi_logs  # noqa: E402  (after the path is set)
from core import settings as svi_settings  # noqa: E402

_cfg = svi_settings.load(str(ROOT / "instance"))  # fails fast on a bad setting, production too

chdir = str(ROOT)
wsgi_app = "app:create_app()"
bind = [_cfg["WEB_BIND"]]
workers = int(_cfg["WEB_WORKERS"]) or min(2 * (os.cpu_count() or 1) + 1, 8)
worker_class = "gthread"
threads = int(_cfg["WEB_THREADS"])
timeout = 10
graceful_timeout = 30
# Idle keep-alive connections from the proxy are kept longer than the proxy keeps them
# (nginx's upstream keepalive_timeout is 60 s): gunicorn never closes one under its feet.
keepalive = 75
preload_app = False
forwarded_allow_ips = _cfg["TRUSTED_PROXIES"]
accesslog = None
errorlog = "-"
loglevel = str(_cfg["LOG_LEVEL"]).lower()
logconfig_dict = svi_logs.gunicorn_logconfig(_cfg["LOG_FORMAT"], str(_cfg["LOG_LEVEL"]).upper())
# The workers' heartbeat files on a memory file system (a slow disk would stall them).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The server's name in the process list (ps, top): svi-web <bind>.
proc_name = f"svi-web {_cfg['WEB_BIND']}"
# No control socket (gunicornc): its default path is one per user, which two servers on one
# host would fight over; systemctl and signals (HUP, TERM, TTIN/TTOU) do the job.
control_socket_disable = True


def _port(address: str) -> str:
    return address.rpartition(":")[2] or address.replace("/", "_")


def on_starting(server):
    """In the master, before any worker: an empty metrics directory, the instance's name."""
    address = server.cfg.bind[0] if server.cfg.bind else _cfg["WEB_BIND"]
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                  or ROOT / "instance" / "metrics" / _port(address))
    # The workers inherit the environment: they import prometheus_client after this.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    if folder.is_dir():
        for entry in folder.iterdir():  # the files only: the folder may be systemd's
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("INSTANCE_NAME", f"{socket.gethostname()}:{_port(address)}")
    svi_logs._instance = None  # the master's next lines carry the name too


def post_worker_init(worker):
    """The worker has loaded the app: freeze what start-up built (see the module's notes)."""
    gc.freeze()


def child_exit(server, worker):
    """A worker is gone: its live gauges go with it (its counters still count)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
