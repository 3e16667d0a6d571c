"""The load: pre-generated signed Twilio webhooks replayed by wrk at a fixed concurrency."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
#: Only used to sign requests and to build the URLs inside TwiML: nothing is ever sent there.
PUBLIC_BASE_URL = "https://svi.bench.invalid"
NATIONAL_NUMBER = "+33806000156"
ACCOUNT_SID = "AC" + "b" * 32
LUA_SCRIPT = Path(__file__).with_name("wrk.lua")
HIDDEN_SHARE = 0.03


def caller_pool(rng: random.Random, size: int) -> list[str]:
    """Distinct French mobile numbers; the load draws from them, so callers come back."""
    numbers: set[str] = set()
    while len(numbers) < size:
        numbers.add(f"+33{rng.choice('67')}{rng.randrange(10**8):08d}")
    return sorted(numbers)


def incoming_call_params(call_sid: str, caller: str) -> dict[str, str]:
    """The form Twilio posts to the Voice URL when a call comes in."""
    hidden = caller == "anonymous"
    place = {"City": "", "State": "", "Zip": "", "Country": "" if hidden else "FR"}
    params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid,
              "CallStatus": "ringing", "Direction": "inbound", "From": caller, "Caller": caller,
              "To": NATIONAL_NUMBER, "Called": NATIONAL_NUMBER}
    for prefix in ("From", "Caller"):
        params.update({prefix + k: v for k, v in place.items()})
    for prefix in ("To", "Called"):
        params.update({prefix + k: v for k, v in place.items()} | {prefix + "Country": "FR"})
    return params


def write_requests(path: Path, count: int, tag: int, callers: list[str],
                   rng: random.Random) -> None:
    """Write `count` signed requests with new CallSids, one "body<TAB>signature" per line."""
    validator, url = RequestValidator(AUTH_TOKEN), PUBLIC_BASE_URL + "/ivr/voice"
    with path.open("w") as out:
        for i in range(count):
            caller = "anonymous" if rng.random() < HIDDEN_SHARE else rng.choice(callers)
            params = incoming_call_params(f"CA{tag:02x}{i:030x}", caller)
            out.write(f"{urlencode(params)}\t{validator.compute_signature(url, params)}\n")


def busy_cpu_seconds() -> float:
    """CPU time used by every process on the machine since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wrk_version() -> str:
    """wrk's version line, or 'absent'."""
    if not shutil.which("wrk"):
        return "absent"
    run = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    return (run.stdout + run.stderr).split("Copyright")[0].strip()


def run_wrk(port: int, data: Path, *, seconds: int, connections: int, threads: int) -> dict:
    """Run wrk against 127.0.0.1:port; return its figures (latencies in µs) and CPU times."""
    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_cpu_seconds()
    run = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
         "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{port}", "--", str(data), str(threads)],
        capture_output=True, text=True, timeout=seconds + 60)
    after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_cpu_seconds() - busy
    line = next((l for l in run.stdout.splitlines() if l.startswith("BENCH-RESULT ")), None)
    if run.returncode != 0 or line is None:
        output = (run.stdout + run.stderr)[-2000:]
        raise RuntimeError(f"wrk failed (exit status {run.returncode}): {output}")
    result = json.loads(line.removeprefix("BENCH-RESULT "))
    result["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["machine_cpu_s"] = busy
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result
