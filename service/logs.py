"""JSON logs: one object per line from json.dumps (so any text is escaped), and one access line per request.

Access lines carry method, path, status, latency, rows and request id; never a feature value. Health and
metrics probes are logged at DEBUG, so INFO shows traffic, not probes.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import time
import uuid
import warnings
from typing import TextIO

from flask import Flask, Response, g, request

ACCESS = logging.getLogger("service.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PROBES = ("/health/", "/v2/health/", "/metrics")
RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
WARNINGS = logging.getLogger("py.warnings")
REMEMBERED_WARNINGS = 1024  # distinct warnings logged once each; past this many, each is logged as it comes
_warned: set[tuple[str, str]] = set()


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the record's extra fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update({key: value for key, value in vars(record).items() if key not in RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                file: TextIO | None = None, line: str | None = None) -> None:
    """warnings.showwarning as one JSON log line, once per distinct category and text."""
    key = (category.__name__, str(message))
    if key in _warned:
        return
    if len(_warned) < REMEMBERED_WARNINGS:
        _warned.add(key)
    WARNINGS.warning("%s", message, extra={"category": category.__name__, "source": f"{filename}:{lineno}"})


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for every log record, and for Python warnings (a library's warnings included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    warnings.showwarning = log_warning
    # waitress warns "Task queue depth is N" for every request that waits for a free thread: under load, one
    # line per request. The in-flight gauge at /metrics says the same once.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def request_id(supplied: str) -> str:
    """The client's X-Request-ID when it is a sane one, else a new id."""
    return supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex


def is_probe(path: str) -> bool:
    return path.startswith(PROBES) or path == "/v2/health"


def install(app: Flask) -> None:
    """Write each request's access line (its start time is g.started, set when the request begins)."""

    @app.after_request
    def access_line(response: Response) -> Response:
        latency = time.perf_counter() - g.started
        ACCESS.log(logging.DEBUG if is_probe(request.path) else logging.INFO, "%s %s %s",
                   request.method, request.path, response.status_code,
                   extra={"method": request.method, "path": request.path, "status": response.status_code,
                          "latency_ms": round(latency * 1000, 3), "rows": g.get("rows"),
                          "request_id": g.get("request_id")})
        return response
