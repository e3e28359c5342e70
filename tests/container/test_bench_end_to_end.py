"""`scripts/bench.py` end to end with short runs: the image, the service from source, MLServer (its own venv from
PyPI, two configurations of its sweep) and the book-style app all answer the default model's prediction, this
image and MLServer the bring-your-own DataFrame pipeline's and 100-row requests, in two interleaved rounds with
the CPU per request read from each server's cgroup; the reports exist.
Speeds are not asserted here: that is the benchmark's job, not a test's."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_end_to_end(image, tmp_path):
    stem = tmp_path / "bench"
    result = subprocess.run([sys.executable, "scripts/bench.py", "--seconds", "1", "--rounds", "2", "--sweep-seconds",
                             "1", "--sweep-configurations", "2", "--concurrency", "32", "--rows", "100",
                             "--out", str(stem)],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(stem.with_suffix(".json").read_text())
    servers = {(run["model"], run["server"]) for run in results["runs"]}
    assert servers == {("diabetes", "this image"), ("diabetes", "from source"), ("diabetes", "MLServer 1.7.1"),
                       ("diabetes", "book-style Flask"), ("houses", "this image"), ("houses", "MLServer 1.7.1")}
    batches = {(run["model"], run["server"]) for run in results["runs"] if run["rows"] == 100}
    assert batches == {(model, server) for model in ("diabetes", "houses") for server in ("this image",
                                                                                        "MLServer 1.7.1")}
    for run in results["runs"]:
        assert [load["concurrency"] for load in run["loads"]] == [32]
        assert all(load["rounds"] == 2 for load in run["loads"])
        if "identical_to_model" in run:
            assert run["identical_to_model"], run
        if run["server"] != "book-style Flask":  # it may finish nothing in a 1 s run at 32 connections
            assert all(load["requests"] > 0 and load["errors"] == 0 for load in run["loads"]), run
            # as root here, every server's CPU time is read: containers' own cgroups, processes' made for them
            assert all(load["cpu_ms_per_request"] is not None and load["cpu_ms_per_request"] > 0
                       for load in run["loads"]), run
    assert len(results["mlserver_configurations"]) == 4  # two settings for each model
    assert [goal["goal"] for goal in results["goals"]][0].startswith("/predict at least 2.5x")
    assert sum(goal["goal"].startswith("100-row requests") for goal in results["goals"]) == 2  # /predict, V2
    assert result.stdout.startswith("**default model:")  # stdout carries the tables only
    assert "Requests/s by concurrency" in result.stdout and "p50 / p90 / p99 / p99.9" in result.stdout
    assert "Requests of many rows" in result.stdout
    assert stem.with_suffix(".png").stat().st_size > 10_000
    assert stem.with_name("bench-latency.png").stat().st_size > 10_000
    assert all(load["p999_ms"] is not None for run in results["runs"] if run["server"] != "book-style Flask"
               for load in run["loads"])
