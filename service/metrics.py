"""Prometheus metrics at /metrics (prometheus_client), one registry per app.

Counted: every request but health probes and /metrics itself, by endpoint (the route template, so the label
set stays bounded), method and status; its latency; rows predicted; requests in flight; model info.
With several worker processes (PROMETHEUS_MULTIPROC_DIR set by service/workers.py) /metrics sums them all.
"""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .logs import is_probe

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
        Gauge("model_info", "The served model (always 1)", ("name", "version", "sha256"), registry=self.registry,
              multiprocess_mode="max").labels(card["name"], card["version"], card["artifact"]["sha256"]).set(1)
        self.shared = "PROMETHEUS_MULTIPROC_DIR" in os.environ

    def export(self) -> Response:
        registry = self.registry
        if self.shared:  # every worker's files, read at each scrape
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        # content_type, not mimetype: Flask would add a second charset to CONTENT_TYPE_LATEST's own
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def install(app: Flask, metrics: Metrics) -> None:
    """Count and time each request (its start time is g.started, set when the request begins)."""
    @app.before_request
    def enter() -> None:
        g.counted = not is_probe(request.path)
        if g.counted:
            metrics.in_flight.inc()

    @app.after_request
    def record(response: Response) -> Response:
        if g.get("counted"):
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            labels = (endpoint, request.method, str(response.status_code))
            metrics.requests.labels(*labels).inc()
            metrics.latency.labels(*labels).observe(time.perf_counter() - g.started)
            if g.get("rows") and response.status_code == 200:
                metrics.rows.labels(endpoint).inc(g.rows)
        return response

    @app.teardown_request
    def leave(_error: BaseException | None) -> None:
        if g.get("counted"):
            metrics.in_flight.dec()

    @app.get("/metrics")
    def export() -> Response:
        return metrics.export()
