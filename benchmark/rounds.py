"""Interleaved rounds: every target loaded in turn (A, B, C, A, B, C, ...), so a machine that gets busier or
quieter during the run moves all of them alike, and each figure is the median of its rounds with its spread.

Beside requests per second, each run reads the CPU time its server's cgroup spent (`benchmark/cpu.py`): CPU
per request is what a change to the request path moves, whatever else the machine is doing.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import load, report
from .targets import Route, Server

LATENCIES = ("p50_ms", "p90_ms", "p99_ms", "p999_ms")


@dataclass(frozen=True)
class Target:
    """One route of one started server, loaded at these concurrencies."""

    server: Server
    route: Route
    concurrency: tuple[int, ...]

    @property
    def label(self) -> str:
        rows = f" ({self.route.rows} rows)" if self.route.rows > 1 else ""
        return f"{self.server.name} {self.route.label}{rows}"


def sample(target: Target, concurrency: int, seconds: int) -> dict[str, Any]:
    """One load run, with the CPU seconds the server's cgroup spent during it (None where unreadable)."""
    meter = target.server.meter
    before, failure = meter.read(), meter.failure
    result = load.run(target.server.url + target.route.path, target.route.body, concurrency, seconds)
    after = meter.read()
    failure = failure or meter.failure
    cpu = None if before is None or after is None else round(after - before, 6)
    return {**result.as_dict(), "cpu_seconds": cpu, **({"cpu_failure": failure} if failure else {})}


def interleave(targets: Sequence[Target], rounds: int, seconds: int,
               say: Callable[[str], None]) -> list[dict[int, list[dict[str, Any]]]]:
    """For each target (in order), its samples by concurrency, one per round; rounds go through all targets."""
    samples: list[dict[int, list[dict[str, Any]]]] = [{c: [] for c in t.concurrency} for t in targets]
    for number in range(1, rounds + 1):
        for target, by_concurrency in zip(targets, samples, strict=True):
            for concurrency in target.concurrency:
                got = sample(target, concurrency, seconds)
                by_concurrency[concurrency].append(got)
                say(f"round {number}/{rounds}: {target.label} c={concurrency}: "
                    f"{got['requests_per_second']:,.0f} req/s, p99 {report.ms(got['p99_ms'])} ms, "
                    f"CPU {_per_request(got)} ms/request, {got['errors']} errors"
                    + (f" (CPU unreadable: {got['cpu_failure']})" if "cpu_failure" in got else ""))
    return samples


def summarize(samples: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """The rounds of one target at one concurrency: medians, the spread of requests per second, the errors and
    requests of all rounds, CPU per request (median of the rounds whose cgroup could be read, and how many those
    were: a read that fails once in a run, as one did in CI, leaves the other rounds' figure) and rows per
    second."""
    rates = [s["requests_per_second"] for s in samples]
    cpu = [value for s in samples if (value := _cpu_ms(s)) is not None]
    rate = statistics.median(rates)
    return {
        "concurrency": samples[0]["concurrency"], "seconds": samples[0]["seconds"], "rounds": len(samples),
        "requests": sum(s["requests"] for s in samples), "requests_per_second": rate,
        "requests_per_second_min": min(rates), "requests_per_second_max": max(rates),
        **{key: _median([s[key] for s in samples]) for key in LATENCIES},
        "errors": sum(s["errors"] for s in samples),
        "cpu_ms_per_request": round(statistics.median(cpu), 4) if cpu else None, "cpu_rounds": len(cpu),
        "rows": rows, "rows_per_second": rate * rows,
    }


def _median(values: list[float | None]) -> float | None:
    """The median of the rounds that completed a request (None if none did)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _cpu_ms(one: dict[str, Any]) -> float | None:
    if one["cpu_seconds"] is None or one["requests"] == 0:
        return None
    return one["cpu_seconds"] * 1000 / one["requests"]


def _per_request(one: dict[str, Any]) -> str:
    value = _cpu_ms(one)
    return "-" if value is None else f"{value:.3f}"
