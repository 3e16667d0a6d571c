"""A throwaway PostgreSQL cluster for tests and benchmarks (initdb + pg_ctl, Unix socket only).

initdb refuses to run as root: as root the cluster is created and run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"{name} introuvable : installez PostgreSQL (make system-deps)")
    return found


class Cluster:
    """Start with `start()`, get `url(dbname)`, create databases, `stop()` removes everything."""

    def __init__(self, port: int = 54329):
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="svi-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    def start(self) -> "Cluster":
        self.sock.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
            os.chmod(self.root, 0o755)
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "svi",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self.resume()
        return self

    def resume(self) -> "Cluster":
        """Start the server (again) on its data directory, waiting until it accepts connections."""
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses='' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-w", "-l",
                  str(self.root / "log"), "start")
        return self

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its files (`resume()` starts it again): a database outage.
        `fast` disconnects every client and shuts down cleanly, `immediate` is a crash."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) through the Unix socket."""
        return f"postgresql+psycopg://svi@/{dbname}?host={self.sock}&port={self.port}"

    def create_database(self, name: str) -> str:
        """Create a database and return its URL."""
        import psycopg
        with psycopg.connect(host=str(self.sock), port=self.port, user="svi", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
