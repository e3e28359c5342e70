"""Access logs (JSON, no feature values, probes at DEBUG) and Prometheus metrics (probes not counted)."""
from __future__ import annotations

import io
import json
import logging
import os
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.fastpath import Declined
from service.logs import FLUSH_SECONDS, BatchedStreamHandler, JsonFormatter, request_id
from service.state import EXTENSION

from .conftest import BUNDLES
from .test_api import records_for


def access_records(caplog):
    return [r for r in caplog.records if r.name == "service.access"]


def test_one_json_access_line_per_request_without_feature_values(client, service, caplog):
    caplog.set_level(logging.DEBUG, logger="service.access")
    records = records_for(service, 3)
    marker = 987.654321  # a value no timing or count will spell by chance
    records[0][service.bundle.feature_names[0]] = marker
    client.post("/predict", json=records, headers={"X-Request-ID": "log-1"})
    (record,) = access_records(caplog)
    line = json.loads(JsonFormatter().format(record))
    assert record.levelno == logging.INFO
    assert {k: line[k] for k in ("method", "path", "status", "rows", "request_id")} == {
        "method": "POST", "path": "/predict", "status": 200, "rows": 3, "request_id": "log-1"}
    assert line["latency_ms"] > 0 and line["time"].endswith("+00:00")
    assert set(line) == {"time", "level", "logger", "message", "method", "path", "status", "latency_ms", "rows",
                         "request_id", "pid"}
    assert "987.654" not in JsonFormatter().format(record)


def test_probes_are_logged_at_debug_only(client, caplog):
    caplog.set_level(logging.DEBUG, logger="service.access")
    for path in ("/health/live", "/health/ready", "/v2/health/ready", "/metrics"):
        client.get(path)
    assert {r.levelno for r in access_records(caplog)} == {logging.DEBUG}


def test_the_formatter_escapes_whatever_it_is_given():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, 'quote " newline \n tab \t %s', ("\u2028",), None)
    record.path = '/a"b'
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == 'quote " newline \n tab \t \u2028' and json.loads(line)["path"] == '/a"b'


def batched(stream) -> logging.Logger:
    """The access logger, writing through a BatchedStreamHandler to `stream` only."""
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("service.access")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


@pytest.fixture()
def access_logger():
    logger = logging.getLogger("service.access")
    saved = (logger.propagate, logger.level, list(logger.handlers))
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = saved[0]
    logger.setLevel(saved[1])
    for handler in saved[2]:
        logger.addHandler(handler)


def test_access_lines_are_written_in_batches_in_order_and_a_warning_at_once(access_logger):
    stream = io.StringIO()
    logger = batched(stream)
    for index in range(3):
        logger.info("access %d", index)
    assert stream.getvalue() == ""  # not one write per line
    logger.warning("trouble")
    assert stream.getvalue() == "INFO access 0\nINFO access 1\nINFO access 2\nWARNING trouble\n"
    logger.info("pending")
    other = logging.LogRecord("service", logging.INFO, __file__, 1, "model ready", None, None)
    logger.handlers[0].handle(other)  # any other logger's line: at once, after what was pending
    assert stream.getvalue().endswith("INFO pending\nINFO model ready\n")
    logger.info("later")
    deadline = time.monotonic() + 20 * FLUSH_SECONDS
    while "later" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(FLUSH_SECONDS / 5)
    assert stream.getvalue().endswith("INFO later\n")  # the writer thread, within FLUSH_SECONDS
    logger.info("at shutdown")
    logger.handlers[0].close()  # what logging.shutdown() does when a worker exits
    assert stream.getvalue().endswith("INFO at shutdown\n")


def test_a_line_written_at_once_never_deadlocks_with_the_writer_thread(access_logger):
    """A request thread holds the handler's lock while it formats a line and then writes it at once; the writer
    thread wakes meanwhile. Both take the handler's two locks in the same order, so neither waits forever."""
    formatting = threading.Event()
    release = threading.Event()

    class Slow(logging.Formatter):
        def format(self, record):
            if record.getMessage() == "slow":
                formatting.set()
                release.wait(5)
            return super().format(record)

    stream = io.StringIO()
    logger = batched(stream)
    logger.handlers[0].setFormatter(Slow("%(levelname)s %(message)s"))
    thread = threading.Thread(target=logger.warning, args=("slow",), daemon=True)
    thread.start()
    assert formatting.wait(5)
    time.sleep(4 * FLUSH_SECONDS)  # the writer thread wakes and flushes while the lock is held
    release.set()
    thread.join(5)
    assert not thread.is_alive() and stream.getvalue() == "WARNING slow\n"


def test_a_forked_worker_writes_its_own_lines_only(tmp_path, access_logger):
    path = tmp_path / "log"
    with path.open("w", buffering=1) as stream:
        logger = batched(stream)
        logger.info("parent, before the fork")
        pid = os.fork()
        if pid == 0:
            logger.info("child")
            logging.shutdown()
            os._exit(0)
        os.waitpid(pid, 0)
        logger.handlers[0].close()
    lines = path.read_text().splitlines()
    assert sorted(lines) == ["INFO child", "INFO parent, before the fork"]


def test_new_request_ids_are_unique_across_workers(tmp_path):
    ids = [request_id("") for _ in range(1000)]
    pid = os.fork()
    if pid == 0:
        (tmp_path / "child").write_text("\n".join(request_id("") for _ in range(1000)))
        os._exit(0)
    os.waitpid(pid, 0)
    ids += (tmp_path / "child").read_text().split()
    assert len(set(ids)) == 2000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def samples(client) -> dict:
    text = client.get("/metrics").get_data(as_text=True)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, metric, **labels):
    return found.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_rows_and_latency_but_not_probes(client, service):
    before = samples(client)
    client.post("/predict", json=records_for(service, 4))
    client.post("/predict", json=[])
    for path in ("/health/live", "/health/ready", "/v2/health/live", "/metrics"):
        client.get(path)
    after = samples(client)
    ok = dict(endpoint="/predict", method="POST", status="200")
    assert value(after, "http_requests_total", **ok) - value(before, "http_requests_total", **ok) == 1
    bad = dict(endpoint="/predict", method="POST", status="422")
    assert value(after, "http_requests_total", **bad) - value(before, "http_requests_total", **bad) == 1
    assert value(after, "http_request_duration_seconds_count", **ok) - \
        value(before, "http_request_duration_seconds_count", **ok) == 1
    assert value(after, "predicted_rows_total", endpoint="/predict") - \
        value(before, "predicted_rows_total", endpoint="/predict") == 4
    assert not any(dict(labels).get("endpoint", "").startswith(("/health", "/metrics", "/v2/health"))
                   for _, labels in after)
    assert value(after, "http_requests_in_flight") == 0
    card = service.bundle.card
    assert value(after, "model_info", name=card["name"], version=card["version"],
                 sha256=card["artifact"]["sha256"]) == 1


def test_unmatched_paths_share_one_label(client):
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    found = samples(client)
    assert value(found, "http_requests_total", endpoint="unmatched", method="GET", status="404") >= 2
    assert not any("/no/such" in str(labels) for _, labels in found)


@pytest.mark.parametrize("raised, reason", [(Declined("values that are not finite"), "declined"),
                                            (RuntimeError("an internal moved"), "failed")])
def test_a_fast_path_fallback_is_logged_once_and_counted(raised, reason, caplog):
    """model.predict answers, the same as ever; /metrics counts each time, the log says it the first time only."""
    app = create_app({"MODEL_DIR": str(BUNDLES["diabetes"])})
    service = app.extensions[EXTENSION]
    client = app.test_client()
    expected = client.post("/predict", json=records_for(service, 2)).get_json()["predictions"]

    def fast(_data):
        raise raised
    service.predictor.fast = fast
    caplog.set_level(logging.INFO, logger="service.predictor")
    for _ in range(3):
        answer = client.post("/predict", json=records_for(service, 2))
        assert answer.status_code == 200 and answer.get_json()["predictions"] == expected
    found = samples(client)
    assert value(found, "fast_path_fallbacks_total", reason=reason) == 3
    assert value(found, "fast_path_fallbacks_total", reason=({"declined", "failed"} - {reason}).pop()) == 0
    lines = [r for r in caplog.records if r.name == "service.predictor" and "fast path" in r.getMessage()]
    assert len(lines) == 1 and type(raised).__name__ in lines[0].getMessage()
    assert lines[0].levelno == (logging.WARNING if reason == "failed" else logging.INFO)
