"""One load generator for every server: wrk (Debian's package), keep-alive connections on loopback only."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""
# wrk --latency prints 50/75/90/99 only; its done() callback reads any percentile from the same histogram (us).
PERCENTILES = (50, 90, 99, 99.9)
DONE = """done = function(summary, latency, requests)
  for _, p in ipairs({{{percentiles}}}) do
    io.write(string.format("percentile %s %d\\n", p, latency:percentile(p)))
  end
end
""".format(percentiles=", ".join(map(str, PERCENTILES)))


class LoadError(Exception):
    """wrk is missing or its output could not be read."""


@dataclass
class Load:
    """One run: throughput, latency percentiles (milliseconds) and failures."""

    concurrency: int
    seconds: float
    requests: int
    requests_per_second: float
    p50_ms: float | None  # None when no request completed within the run
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    errors: int  # non-2xx answers plus connect/read/write errors and timeouts

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(pattern: str, output: str) -> str:
    """The first group of the pattern's first match in a line of wrk's output; ValueError if none."""
    found = re.search(pattern, output, re.M)
    if found is None:
        raise ValueError(f"no line matches {pattern}")
    return found.group(1)


def parse(output: str, concurrency: int, seconds: float) -> Load:
    """The numbers in wrk's output, with the percentiles our done() callback prints."""
    try:
        requests = int(_first(r"^\s+(\d+) requests in", output))
        rate = float(_first(r"^Requests/sec:\s+([\d.]+)", output))
    except ValueError as exc:
        raise LoadError(f"unreadable wrk output: {output[-500:]!r}") from exc
    percentiles = {float(p): int(us) / 1000 for p, us in re.findall(r"^percentile ([\d.]+) (\d+)$", output, re.M)}
    if requests == 0:
        percentiles = {}  # wrk's histogram is empty: its percentiles read 0
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Load(concurrency, seconds, requests, rate, percentiles.get(50), percentiles.get(90), percentiles.get(99),
                percentiles.get(99.9), errors)


def run(url: str, body: bytes | None, concurrency: int, seconds: int) -> Load:
    """`concurrency` connections for `seconds`, POSTing `body` (or GETs when None), on 1 or 2 wrk threads."""
    if not url.startswith("http://127.0.0.1:"):
        raise LoadError(f"loopback only: {url}")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise LoadError("wrk not found; run `bash scripts/bootstrap.sh`, which installs it")
    threads = min(2, concurrency)
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "load.lua"
        script.write_text((POST.format(body=_lua_string(body.decode())) if body is not None else "") + DONE)
        command = [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
        result = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise LoadError(f"wrk failed on {url}: {result.stderr.strip() or result.stdout.strip()}")
    return parse(result.stdout, concurrency, seconds)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
