"""The benchmark's results as JSON (for machines), markdown tables (for the README) and two PNG charts."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from imagebuild import write_atomic


def ms(value: float | None) -> str:
    """A latency for people: one decimal, or '-' when no request completed."""
    return "-" if value is None else f"{value:.1f}"


def _at(run: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    return next((load for load in run["loads"] if load["concurrency"] == concurrency), None)


def _spread(load: dict[str, Any]) -> str:
    if "requests_per_second_min" not in load:
        return "-"
    return f"{load['requests_per_second_min']:,.0f}-{load['requests_per_second_max']:,.0f}"


def _cpu(load: dict[str, Any]) -> str:
    """CPU per request; marked with the rounds it comes from when the cgroup could not be read in every one."""
    value = load.get("cpu_ms_per_request")
    if value is None:
        return "-"
    partial = load.get("cpu_rounds", load.get("rounds")) != load.get("rounds")
    return f"{value:.3f}" + (f" ({load['cpu_rounds']} of {load['rounds']} rounds)" if partial else "")


def single_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of one-row requests (the batch runs have their own table, and no chart)."""
    return [run for run in runs if run.get("rows", 1) == 1]


def markdown(results: dict[str, Any]) -> str:
    levels = results["concurrency"]
    focus = 32 if 32 in levels else levels[-1]
    rounds = results.get("rounds", 1)
    lines = []
    for model, title in results["models"].items():
        runs = [run for run in results["runs"] if run["model"] == model]
        lines += [f"**{title}**", "",
                  f"Requests/s by concurrency (median of {rounds} interleaved rounds of {results['seconds']:.0f} s, "
                  f"wrk, loopback, {results['cpus']} CPUs); at concurrency {focus}: the spread of the rounds, "
                  "latency, and CPU per request from the server's cgroup:", "",
                  "| server | route | " + " | ".join(f"c={c}" for c in levels)
                  + f" | c={focus} spread | p50 ms | p99 ms | CPU ms/request | errors | memory MB (PSS) "
                  "| cold start s | image |",
                  "|---|---|" + "---:|" * len(levels) + "---:|---:|---:|---:|---:|---:|---:|---|"]
        for run in single_rows(runs):
            rates = [f"{load['requests_per_second']:,.0f}" if (load := _at(run, c)) else "-" for c in levels]
            at_focus = _at(run, focus) or {}
            errors = sum(load["errors"] for load in run["loads"])
            lines.append(f"| {run['server']} | `{run['route']}` | " + " | ".join(rates)
                         + f" | {_spread(at_focus)} | {ms(at_focus.get('p50_ms'))} | {ms(at_focus.get('p99_ms'))} | "
                         + f"{_cpu(at_focus)} | {errors} | {run.get('memory', {}).get('pss_mb', '-')} | "
                         + f"{run.get('cold_start_s', '-')} | {run.get('image', '-')} |")
        batches = [run for run in runs if run.get("rows", 1) > 1]
        if batches:
            lines += ["", f"Requests of many rows, at concurrency {focus} (medians of the rounds):", "",
                      "| server | route | rows | requests/s | rows/s | spread (requests/s) | p99 ms | CPU ms/request "
                      "| CPU µs/row | errors |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for run in batches:
                load = run["loads"][0]
                per_row = ("-" if load.get("cpu_ms_per_request") is None
                           else f"{load['cpu_ms_per_request'] * 1000 / run['rows']:.1f}")
                lines.append(f"| {run['server']} | `{run['route']}` | {run['rows']:,} | "
                             f"{load['requests_per_second']:,.1f} | {load['rows_per_second']:,.0f} | {_spread(load)} | "
                             f"{ms(load.get('p99_ms'))} | {_cpu(load)} | {per_row} | {load['errors']} |")
        lines += ["", "Latency (ms), p50 / p90 / p99 / p99.9, by concurrency:", "",
                  "| server | route | " + " | ".join(f"c={c}" for c in levels) + " |",
                  "|---|---|" + "---|" * len(levels)]
        for run in single_rows(runs):
            cells = [" / ".join(ms(load.get(key)) for key in PERCENTILE_KEYS) if (load := _at(run, c)) else "-"
                     for c in levels]
            lines.append(f"| {run['server']} | `{run['route']}` | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Goals (at concurrency 32):", "", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {goal['goal']} | {goal['measured']} | {'yes' if goal['met'] else '**no**'} |"
              for goal in results["goals"]]
    if results.get("mlserver_configurations"):
        lines += ["", "MLServer configurations tried, one after another (concurrency 32; the best is the one measured "
                  "in the rounds):", "",
                  "| model | parallel_workers | adaptive batching | requests/s | p99 ms | errors |",
                  "|---|---:|---|---:|---:|---:|"]
        for tried in results["mlserver_configurations"]:
            batching = (f"max_batch_size {tried['max_batch_size']}, max_batch_time {tried['max_batch_time']} s"
                        if tried["max_batch_size"] > 1 else "off")
            lines.append(f"| {tried['model']} | {tried['parallel_workers']} | {batching} | "
                         f"{tried['requests_per_second']:,.0f} | {ms(tried['p99_ms'])} | {tried['errors']} |")
    lines += ["", *[f"- {note}" for note in results["notes"]]]
    return "\n".join(lines) + "\n"


PERCENTILE_KEYS = ("p50_ms", "p90_ms", "p99_ms", "p999_ms")


def _png(figure: Any) -> bytes:
    from matplotlib import pyplot
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    pyplot.close(figure)
    return image.getvalue()


def _label(run: dict[str, Any]) -> str:
    return f"{run['model']}: {run['server']} {run['route']}"


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    return pyplot


def chart(results: dict[str, Any]) -> bytes:
    """The PNG: requests/s and p99 latency by concurrency, one line per model, server and route."""
    figure, (rates, tails) = _pyplot().subplots(1, 2, figsize=(12, 4.5))
    for run in single_rows(results["runs"]):
        levels = [load["concurrency"] for load in run["loads"]]
        rates.plot(levels, [load["requests_per_second"] for load in run["loads"]], marker="o", label=_label(run))
        tails.plot(levels, [load["p99_ms"] if load["p99_ms"] is not None else float("nan") for load in run["loads"]],
                   marker="o", label=_label(run))
    for axes, title in ((rates, "requests/s (higher is better)"), (tails, "p99 latency, ms (lower is better)")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(results["concurrency"], [str(c) for c in results["concurrency"]])
        axes.set_xlabel("concurrent connections")
        axes.set_title(title)
        axes.grid(alpha=0.3)
    tails.set_yscale("log")
    rates.legend(fontsize=6)
    return _png(figure)


def latency_chart(results: dict[str, Any]) -> bytes:
    """The PNG: latency against throughput, one curve per prediction route (a point per concurrency), p50 and
    p99 side by side; lower and further right is better."""
    figure, panels = _pyplot().subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for run in single_rows(results["runs"]):
        if "no-op" in run["route"] or run["server"] == "book-style Flask":
            continue
        rates = [load["requests_per_second"] for load in run["loads"]]
        for axes, key in zip(panels, ("p50_ms", "p99_ms"), strict=True):
            line, = axes.plot(rates, [load[key] if load[key] is not None else float("nan") for load in run["loads"]],
                              marker="o", label=_label(run))
            for load, rate in zip(run["loads"], rates, strict=True):
                if load[key] is not None:
                    axes.annotate(str(load["concurrency"]), (rate, load[key]), fontsize=6, color=line.get_color(),
                                  textcoords="offset points", xytext=(3, 3))
    for axes, key in zip(panels, ("p50", "p99"), strict=True):
        axes.set_yscale("log")
        axes.set_xlabel("requests/s")
        axes.set_title(f"{key} latency (ms) against throughput; labels: connections")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("ms")
    panels[0].legend(fontsize=6)
    return _png(figure)


def write(results: dict[str, Any], stem: Path) -> dict[str, Path]:
    paths = {"json": stem.with_suffix(".json"), "markdown": stem.with_suffix(".md"), "png": stem.with_suffix(".png"),
             "latency_png": stem.with_name(stem.name + "-latency.png")}
    write_atomic(paths["json"], json.dumps(results, indent=2).encode())
    write_atomic(paths["markdown"], markdown(results).encode())
    write_atomic(paths["png"], chart(results))
    write_atomic(paths["latency_png"], latency_chart(results))
    return paths
