"""The benchmark's own parts that need no servers: reading wrk's output, the goals, the reports."""
from __future__ import annotations

import json

import pytest

from benchmark import load, report

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


def test_reports_are_written_and_the_table_names_every_run(tmp_path):
    loads = [load.parse(WRK, c, 10).as_dict() for c in (1, 32)]
    runs = [{"model": "m", "server": "this image", "route": "POST /predict", "loads": loads,
             "memory": {"pss_mb": 200.0}, "cold_start_s": 1.5, "image": "245 MB"},
            {"model": "m", "server": "MLServer 1.7.1", "route": "POST /v2/.../infer", "loads": loads,
             "memory": {"pss_mb": 210.0}, "cold_start_s": 2.5, "image": "-"}]
    results = {"models": {"m": "a model"}, "cpus": 2, "seconds": 10, "concurrency": [1, 32], "runs": runs,
               "mlserver_configurations": [],
               "goals": [{"goal": "p99 at most 25 ms", "measured": "1200.0 ms", "met": False}], "notes": ["n"]}
    paths = report.write(results, tmp_path / "out" / "bench")
    assert json.loads(paths["json"].read_text()) == results
    table = paths["markdown"].read_text()
    assert "| this image | `POST /predict` | 2,000 | 2,000 | 14.5 | 1200.0 | 24 | 200.0 | 1.5 | 245 MB |" in table
    assert "| this image | `POST /predict` | 14.5 / 0.9 / 1200.0 / 1500.0 | 14.5 / 0.9 / 1200.0 / 1500.0 |" in table
    assert "| p99 at most 25 ms | 1200.0 ms | **no** |" in table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["latency_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
