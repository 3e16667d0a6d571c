"""What the benchmark prints and writes: the machine, the figures, the verdict."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version

from bench.load import wrk_version


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def _postgres_version() -> str:
    try:
        from devtools.pgcluster import _bin
        run = subprocess.run([_bin("postgres"), "--version"], capture_output=True, text=True,
                             timeout=10)
        return run.stdout.split()[2]
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return "absent"


def machine() -> dict[str, str]:
    """The machine and software versions the figures were measured on."""
    import sqlite3
    return {
        "CPU": _cpu_model(),
        "Cores": f"{os.cpu_count()} online, {len(os.sched_getaffinity(0))} usable by the benchmark",
        "Memory": _memory_gib(),
        "Kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Software": (f"gunicorn {version('gunicorn')}, Flask {version('flask')}, "
                     f"SQLAlchemy {version('sqlalchemy')}, SQLite {sqlite3.sqlite_version}, "
                     f"PostgreSQL {_postgres_version()}, {wrk_version()}"),
        "Load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


COLUMNS = ("Server", "Requests/s", "p50 (ms)", "p90 (ms)", "p99 (ms)", "Max (ms)", "Non-200",
           "Socket errors", "Server CPU", "wrk CPU", "Other CPU", "Calls logged")


def row(name: str, r: dict) -> tuple[str, ...]:
    """One table row from a wrk result."""
    sockets = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    logged = "—" if "calls_logged" not in r else f"{r['calls_logged']} / {r['requests']}"
    return (name, f"{r['rps']:.0f}", f"{r['p50_us'] / 1000:.1f}", f"{r['p90_us'] / 1000:.1f}",
            f"{r['p99_us'] / 1000:.1f}", f"{r['max_us'] / 1000:.1f}", str(r["non200"]),
            str(sockets), f"{r['server_cpu']:.2f} cores", f"{r['wrk_cpu']:.2f} cores",
            f"{r['other_cpu']:.2f} cores", logged)


def text_table(rows: list[tuple[str, ...]]) -> str:
    """Rows as an aligned plain-text table."""
    table = [COLUMNS, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    """Rows as a Markdown table."""
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|"
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in rows)])
