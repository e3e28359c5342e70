"""Prometheus metrics at /metrics (prometheus_client), one registry per app.

Counted: every request but health probes and /metrics itself, by endpoint (the route template, or "unmatched"),
method (one the service routes, else "other") and status (what the app answered); its latency; rows predicted;
requests in flight; open connections; model info. No label takes a value a client chose, so the series stay a
closed set whatever the traffic (an invented method per request would otherwise add series without end).

With several worker processes (PROMETHEUS_MULTIPROC_DIR set by service/workers.py) /metrics sums them all; the
counters and histograms of a worker that died are folded into one file per kind (`fold_dead_worker`), so the
folder holds the live workers' files and those two, however often workers are replaced.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from .logs import is_probe

METRICS = "metrics"  # app.extensions key
OTHER = "other"  # the method label of a method no route takes
FOLDED = ("counter", "histogram")  # the kinds whose dead workers' values must keep counting
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, card: dict) -> None:
        self.registry = CollectorRegistry()
        labels = ("endpoint", "method", "status")
        self.requests = Counter("http_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "Time to answer a request", labels,
                                 buckets=BUCKETS, registry=self.registry)
        self.rows = Counter("predicted_rows", "Rows predicted", ("endpoint",), registry=self.registry)
        self.in_flight = Gauge("http_requests_in_flight", "Requests being answered", registry=self.registry,
                               multiprocess_mode="livesum")
        self.connections = Gauge("http_connections_open", "Client connections open", registry=self.registry,
                                 multiprocess_mode="livesum")
        Gauge("model_info", "The served model (always 1)", ("name", "version", "sha256"), registry=self.registry,
              multiprocess_mode="max").labels(card["name"], card["version"], card["artifact"]["sha256"]).set(1)
        self.fallbacks = Counter("fast_path_fallbacks", "Predictions model.predict answered with the fast path on, "
                                 "by reason (declined: values the fast path does not take; failed: it raised)",
                                 ("reason",), registry=self.registry)
        for reason in ("declined", "failed"):  # both series from the start, at 0
            self.fallbacks.labels(reason)
        self.shared = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        # each label set's children, looked up once: the labels are a closed set (see above)
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def answered(self, endpoint: str, method: str, status: int, seconds: float, rows: int | None) -> None:
        """One answered request: counted and timed by endpoint, method and status, and its rows if it predicted."""
        children = self._answered.get((endpoint, method, status))
        if children is None:
            labels = (endpoint, method, str(status))
            children = self._answered[endpoint, method, status] = (self.requests.labels(*labels),
                                                                   self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)
        if rows and status == 200:
            self.rows.labels(endpoint).inc(rows)

    def fast_path_fallback(self, reason: str) -> None:
        self.fallbacks.labels(reason).inc()

    def export(self) -> Response:
        registry = self.registry
        reading: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.shared:  # every worker's files, read at each scrape, never while a dead worker's are folded
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            reading = _folder_lock(os.environ["PROMETHEUS_MULTIPROC_DIR"], fcntl.LOCK_SH)
        with reading:
            text = generate_latest(registry)
        # content_type, not mimetype: Flask would add a second charset to CONTENT_TYPE_LATEST's own
        return Response(text, content_type=CONTENT_TYPE_LATEST)


@contextlib.contextmanager
def _folder_lock(folder: str, mode: int) -> Iterator[None]:
    """A scrape (shared) never reads the folder while a dead worker's files are being folded (exclusive)."""
    with open(os.path.join(folder, "fold.lock"), "a+b") as lock:
        fcntl.flock(lock, mode)
        yield


def fold_dead_worker(pid: int, folder: str) -> None:
    """After worker `pid` died: its gauges go (in flight and connections are live sums; model_info is the same in
    every worker), and its counters and histograms are added into `<kind>_dead.db`, so totals never go back and
    the folder does not grow with every replaced worker."""
    with _folder_lock(folder, fcntl.LOCK_EX):
        for dead in Path(folder).glob(f"gauge_*_{pid}.db"):
            dead.unlink()
        for kind in FOLDED:
            dead, archive = Path(folder, f"{kind}_{pid}.db"), Path(folder, f"{kind}_dead.db")
            if not dead.exists():
                continue
            files = [str(path) for path in (archive, dead) if path.exists()]
            merged = MultiProcessCollector.merge(files, accumulate=False)  # the form the files hold
            staged = archive.with_suffix(".tmp")  # not *.db: a scrape never reads it half written
            staged.unlink(missing_ok=True)
            values = MmapedDict(str(staged))
            try:
                for metric in merged:
                    for sample in metric.samples:
                        key = mmap_key(metric.name, sample.name, list(sample.labels), list(sample.labels.values()),
                                       metric.documentation)
                        values.write_value(key, sample.value, 0.0)
            finally:
                values.close()
            staged.replace(archive)
            dead.unlink()


@functools.cache
def _routed_methods(app: Flask) -> frozenset[str]:
    """Every method some route takes (read at the first request, once every route is registered)."""
    return frozenset(method for rule in app.url_map.iter_rules() for method in rule.methods or ())


def install(app: Flask, metrics: Metrics) -> None:
    """Count and time each request (its start time is g.started, set when the request begins)."""
    app.extensions[METRICS] = metrics

    @app.before_request
    def enter() -> None:
        g.counted = not is_probe(request.path)
        if g.counted:
            metrics.in_flight.inc()

    @app.after_request
    def record(response: Response) -> Response:
        if g.get("counted"):
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            method = request.method if request.method in _routed_methods(app) else OTHER
            metrics.answered(endpoint, method, response.status_code, time.perf_counter() - g.started, g.get("rows"))
        return response

    @app.teardown_request
    def leave(_error: BaseException | None) -> None:
        if g.get("counted"):
            metrics.in_flight.dec()

    @app.get("/metrics")
    def export() -> Response:
        return metrics.export()
