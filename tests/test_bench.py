"""The benchmark's own parts that need no servers: reading wrk's output, CPU time from cgroups, the interleaved
rounds and their medians, the goals, the reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import cli, cpu, load, report, rounds
from benchmark.targets import Route, Server

WRK = """Running 10s test @ http://127.0.0.1:8080/predict
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    16.20ms   10.01ms 120.34ms   80.00%
    Req/Sec     1.00k   100.00     1.20k    70.00%
  Latency Distribution
     50%   14.50ms
     75%   20.00ms
     90%  900.00us
     99%    1.20s
  19995 requests in 10.00s, 4.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   1999.50
Transfer/sec:    409.00KB
percentile 50 14500
percentile 90 900
percentile 99 1200000
percentile 99.9 1500000
"""


def test_wrk_output_is_read_with_units_and_every_kind_of_error():
    result = load.parse(WRK, 32, 10)
    assert (result.requests, result.requests_per_second) == (19995, 1999.5)
    assert (result.p50_ms, result.p90_ms, result.p99_ms, result.p999_ms) == (14.5, 0.9, 1200.0, 1500.0)
    assert result.errors == 12


def test_a_run_where_nothing_completed_has_no_latency():
    quiet = "  0 requests in 2.00s, 0.00B read\nRequests/sec:      0.00\npercentile 99 0\npercentile 99.9 0\n"
    result = load.parse(quiet, 32, 2)
    assert result.requests == 0 and result.p99_ms is None and result.p999_ms is None


def test_unreadable_output_is_a_clear_error():
    with pytest.raises(load.LoadError, match="unreadable wrk output"):
        load.parse("segmentation fault", 8, 2)


def test_only_loopback_is_loaded():
    with pytest.raises(load.LoadError, match="loopback only"):
        load.run("http://example.invalid/predict", None, 1, 1)


V1_MOUNTS = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTS = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"


def test_cpu_is_read_from_cpuacct_on_hybrid_hosts_and_from_cgroup_v2_elsewhere():
    """Docker's cgroupfs driver accounts a container in v1's cpuacct where it is mounted; the unified
    hierarchy beside it would name the root."""
    hybrid = cpu.hierarchy(V1_MOUNTS)
    assert hybrid == cpu.Hierarchy(Path("/sys/fs/cgroup/cpuacct"), "/", v2=False)
    assert cpu.group_of(7, hybrid, "4:memory:/docker/abc\n2:cpuacct:/docker/abc\n0::/\n") \
        == Path("/sys/fs/cgroup/cpuacct/docker/abc")
    unified = cpu.hierarchy(V2_MOUNTS)
    assert unified == cpu.Hierarchy(Path("/sys/fs/cgroup"), "/", v2=True)
    assert cpu.group_of(7, unified, "0::/system.slice/docker-abc.scope\n") \
        == Path("/sys/fs/cgroup/system.slice/docker-abc.scope")
    assert cpu.hierarchy("22 1 0:20 / /proc rw - proc proc rw\n") is None


def test_cpu_usage_is_read_in_each_hierarchys_unit(tmp_path):
    (tmp_path / "cpuacct.usage").write_text("2500000000\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert cpu.Meter(cpu.Hierarchy(tmp_path, "/", v2=False), tmp_path).read() == 2.5
    assert cpu.Meter(cpu.Hierarchy(tmp_path, "/", v2=True), tmp_path).read() == 1.5
    gone = cpu.Meter(cpu.Hierarchy(tmp_path, "/", v2=True), tmp_path / "gone")
    assert gone.read() is None and gone.failure is not None and "FileNotFoundError" in gone.failure
    assert cpu.Meter(None, None).read() is None


@pytest.mark.skipif(cpu.hierarchy() is None, reason="no cgroup hierarchy here")
def test_a_started_command_and_its_children_are_accounted_in_their_own_cgroup():
    """The command enters its cgroup before it executes, so the CPU of a child that already ended counts."""
    meter, command = cpu.for_command("bench test", [sys.executable, "-c",
                                                    "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                                                    "'sum(range(30_000_000))'])"])
    if meter.read() is None:
        pytest.skip("no permission to make a cgroup here (not root)")
    try:
        subprocess.run(command, check=True)
        assert meter.read() > 0.3  # the child's loop alone takes about half a second
    finally:
        meter.close()
    assert meter.group is not None and not meter.group.exists()


class FakeMeter(cpu.Meter):
    def __init__(self, per_read: float):
        super().__init__(None, None)
        self.used, self.per_read = 0.0, per_read

    def read(self) -> float:
        self.used += self.per_read
        return self.used


def _server(name: str, cpu_per_run: float) -> Server:
    return Server(name, 1, [], lambda: None, lambda: 1, FakeMeter(cpu_per_run))


def test_rounds_interleave_the_targets_and_measure_each_run(monkeypatch):
    order = []

    def fake_run(url: str, body: bytes | None, concurrency: int, seconds: int) -> load.Load:
        order.append((url, concurrency))
        return load.Load(concurrency, seconds, 1000, 1000.0 / seconds, 1.0, 2.0, 3.0, 4.0, 0)

    monkeypatch.setattr(load, "run", fake_run)
    a = rounds.Target(_server("a", 0.5), Route("A", "/a", None), (1, 32))
    b = rounds.Target(_server("b", 1.0), Route("B", "/b", b"{}", rows=100), (32,))
    samples = rounds.interleave([a, b], 2, 1, lambda line: None)
    urls = ["http://127.0.0.1:1/a", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]
    assert order == [(u, c) for u, c in zip(urls * 2, [1, 32, 32] * 2, strict=True)]
    assert [len(samples[0][1]), len(samples[0][32]), len(samples[1][32])] == [2, 2, 2]
    assert samples[0][32][0]["cpu_seconds"] == 0.5 and samples[1][32][1]["cpu_seconds"] == 1.0


def _sample(rate: float, p99: float | None, cpu_seconds: float | None, requests: int = 1000) -> dict:
    return {**load.Load(32, 5, requests, rate, 1.0, 2.0, p99, p99, 1).as_dict(), "cpu_seconds": cpu_seconds}


def test_rounds_are_summarized_as_medians_with_their_spread():
    summary = rounds.summarize([_sample(900, 30, 0.5), _sample(1500, 10, 0.4), _sample(1000, None, 0.6)], 100)
    assert summary["requests_per_second"] == 1000 and summary["rows_per_second"] == 100_000
    assert (summary["requests_per_second_min"], summary["requests_per_second_max"]) == (900, 1500)
    assert summary["p99_ms"] == 20  # the rounds that completed a request
    assert summary["cpu_ms_per_request"] == 0.5 and summary["errors"] == 3 and summary["requests"] == 3000
    partial = rounds.summarize([_sample(900, 30, None), _sample(1000, 30, 0.5)], 1)
    assert (partial["cpu_ms_per_request"], partial["cpu_rounds"]) == (0.5, 1)
    unread = rounds.summarize([_sample(900, 30, None)], 1)
    assert (unread["cpu_ms_per_request"], unread["cpu_rounds"]) == (None, 0)


def _run(server: str, route: str, rate: float, p99: float, rows: int = 1, model: str = "diabetes") -> dict:
    summary = rounds.summarize([_sample(rate, p99, 0.5)], rows)
    return {"model": model, "server": server, "route": route, "rows": rows, "loads": [summary],
            "cold_start_s": 1.5, "memory": {"pss_mb": 200.0}, "image": "191 MB"}


def test_goals_come_from_the_medians_at_32_connections():
    runs = [_run("this image", "POST /predict", 3000, 30), _run("this image", "GET /health/live (no-op)", 5000, 25),
            _run("this image", "POST /invocations", 2900, 30), _run("this image", "POST /v1/...:predict", 2800, 30),
            _run(cli.MLSERVER, "POST /v2/.../infer", 1000, 80),
            _run("this image", "POST /predict", 40, 900, rows=1000), _run(cli.MLSERVER, "POST /v2/.../infer", 10, 900,
                                                                          rows=1000),
            _run("this image", "POST /v2/.../infer", 15, 900, rows=1000),
            _run("this image", "POST /predict", 2000, 20, model="houses"),
            _run(cli.MLSERVER, "POST /v2/.../infer", 500, 90, model="houses")]
    found = {goal["goal"]: (goal["measured"], goal["met"]) for goal in cli.goals(runs)}
    assert found == {
        "/predict at least 2.5x MLServer's best": ("3.00x", True),
        "/predict at least 50% of the no-op route": ("60%", True),
        "/predict's p99 at most 1.5x the no-op route's": ("1.20x", True),
        "1,000-row requests: at least 2x MLServer's rows per second": ("4.00x", True),
        "1,000-row requests, V2 infer with MLServer's own body: at least 2x its rows per second": ("1.50x", False),
        "second model (bring-your-own DataFrame pipeline): at least 2x MLServer's best": ("4.00x", True),
        "cold start at most 2 s (container start to first prediction)": ("1.50 s", True),
        "/invocations and KServe V1 within 10% of /predict (the slower of the two)": ("93%", True)}


def test_bodies_carry_the_rows_asked_for():
    subject = cli.Subject("m", "t", Path("m.joblib"), {"a": 1.5, "b": "x"}, 2.0, [], dataframe=True)
    assert json.loads(subject.records(1)) == {"a": 1.5, "b": "x"}
    assert json.loads(subject.records(3)) == [{"a": 1.5, "b": "x"}] * 3
    tensors = json.loads(subject.v2_body(3))["inputs"]
    assert [(t["shape"], t["data"]) for t in tensors] == [([3], [1.5] * 3), ([3], ["x"] * 3)]
    plain = cli.Subject("m", "t", Path("m.joblib"), {"a": 1.5, "b": 2.0}, 2.0, [], dataframe=False)
    (tensor,) = json.loads(plain.v2_body(2))["inputs"]
    assert (tensor["shape"], tensor["data"]) == ([2, 2], [1.5, 2.0, 1.5, 2.0])


def test_reports_are_written_and_the_tables_name_every_run(tmp_path):
    loads = [{**rounds.summarize([{**load.parse(WRK, c, 10).as_dict(), "cpu_seconds": 9.999}], 1)} for c in (1, 32)]
    runs = [{"model": "m", "server": "this image", "route": "POST /predict", "rows": 1, "loads": loads,
             "memory": {"pss_mb": 200.0}, "cold_start_s": 1.5, "image": "245 MB"},
            {"model": "m", "server": "MLServer 1.7.1", "route": "POST /v2/.../infer", "rows": 1, "loads": loads,
             "memory": {"pss_mb": 210.0}, "cold_start_s": 2.5, "image": "-"},
            {"model": "m", "server": "this image", "route": "POST /predict", "rows": 1000,
             "loads": [rounds.summarize([{**load.parse(WRK, 32, 10).as_dict(), "cpu_seconds": 19.995}], 1000)],
             "memory": {"pss_mb": 200.0}, "cold_start_s": 1.5, "image": "245 MB"}]
    results = {"models": {"m": "a model"}, "cpus": 2, "seconds": 10, "rounds": 1, "concurrency": [1, 32],
               "runs": runs, "mlserver_configurations": [],
               "goals": [{"goal": "p99 at most 25 ms", "measured": "1200.0 ms", "met": False}], "notes": ["n"]}
    paths = report.write(results, tmp_path / "out" / "bench")
    assert json.loads(paths["json"].read_text()) == results
    table = paths["markdown"].read_text()
    assert "median of 1 interleaved rounds of 10 s" in table
    assert ("| this image | `POST /predict` | 2,000 | 2,000 | 2,000-2,000 | 14.5 | 1200.0 | 0.500 | 24 | 200.0 | 1.5 "
            "| 245 MB |") in table
    assert "| this image | `POST /predict` | 1,000 | 1,999.5 | 1,999,500 | 2,000-2,000 | 1200.0 | 1.000 | 1.0 | 12 |" \
        in table
    assert "| this image | `POST /predict` | 14.5 / 0.9 / 1200.0 / 1500.0 | 14.5 / 0.9 / 1200.0 / 1500.0 |" in table
    assert "| p99 at most 25 ms | 1200.0 ms | **no** |" in table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["latency_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_per_request_from_some_rounds_says_how_many():
    from benchmark import report
    partial = rounds.summarize([_sample(900, 30, None), _sample(1000, 30, 0.5)], 1)
    assert report._cpu(partial) == "0.500 (1 of 2 rounds)"
    assert report._cpu(rounds.summarize([_sample(900, 30, 0.4), _sample(1000, 30, 0.5)], 1)) == "0.450"
