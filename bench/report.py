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


COLUMNS = ("Server", "Requests/s", "× ceiling", "× bare", "p50 (ms)", "p90 (ms)", "p99 (ms)",
           "Max (ms)", "CPU/request (ms)", "× ceiling (CPU)", "Non-200", "Socket errors",
           "Server CPU", "wrk CPU", "Other CPU", "Calls logged")


def median(values: list[float]) -> float:
    """The median (nan for no value)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def median_run(runs: list[dict]) -> dict:
    """One server's rounds as one: the median of each figure, the sum of errors."""
    if len(runs) == 1:
        return runs[0]
    summed = ("requests", "non200", "connect_errors", "read_errors", "write_errors", "timeouts",
              "calls_logged")
    merged = {}
    for name, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[name] for r in runs]
            merged[name] = sum(values) if name in summed else median(values)
        else:
            merged[name] = value
    return merged


def cpu_ms(r: dict) -> float:
    """Server CPU time per request, in milliseconds."""
    return r["server_cpu"] / r["rps"] * 1000 if r["rps"] else float("nan")


def _ratio(value: float) -> str:
    return "—" if value != value else f"{value:.2f}"  # nan: not measured


def row(name: str, r: dict, to_ceiling: float = float("nan"), to_bare: float = float("nan"),
        cpu_to_ceiling: float = float("nan")) -> tuple[str, ...]:
    """One table row from a wrk result and its ratios (nan: not measured)."""
    sockets = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    logged = "—" if "calls_logged" not in r else f"{r['calls_logged']} / {r['requests']}"
    return (name, f"{r['rps']:.0f}", _ratio(to_ceiling), _ratio(to_bare),
            f"{r['p50_us'] / 1000:.1f}", f"{r['p90_us'] / 1000:.1f}",
            f"{r['p99_us'] / 1000:.1f}", f"{r['max_us'] / 1000:.1f}", f"{cpu_ms(r):.2f}",
            _ratio(cpu_to_ceiling), str(r["non200"]), str(sockets), f"{r['server_cpu']:.2f} cores",
            f"{r['wrk_cpu']:.2f} cores", f"{r['other_cpu']:.2f} cores", logged)


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
