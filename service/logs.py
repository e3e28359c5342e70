"""JSON logs: one object per line from json.dumps (so any text is escaped), and one access line per request.

Access lines carry method, path, status, latency, rows and request id; never a feature value. Health and
metrics probes are logged at DEBUG, so INFO shows traffic, not probes.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
import warnings
from typing import TextIO

from flask import Flask, Response, g, request

ACCESS = logging.getLogger("service.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PROBES = ("/health/", "/v2/health/", "/metrics")
# SageMaker's and MLflow's health checks, and the Open Inference Protocol's over gRPC
EXACT_PROBES = {"/v2/health", "/ping", "/health", *(f"/inference.GRPCInferenceService/{call}"
                                                       for call in ("ServerLive", "ServerReady", "ModelReady"))}
RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
WARNINGS = logging.getLogger("py.warnings")
REMEMBERED_WARNINGS = 1024  # distinct warnings logged once each; past this many, each is logged as it comes
_warned: set[tuple[str, str]] = set()


FLUSH_SECONDS = 0.05  # access lines wait at most this long to be written, many in one write


class BatchedStreamHandler(logging.StreamHandler):
    """Lines formatted on the caller's thread; access lines below WARNING written in batches, by a writer thread
    within FLUSH_SECONDS or at shutdown (logging.shutdown flushes); any other line at once, with everything
    before it (start-up, readiness and shutdown lines are not delayed).

    One write per line costs a request more than formatting it: a system call, the GIL handed over and taken
    back, and a wake-up of the container runtime that reads the pipe. Order is kept; a forked worker starts
    its own writer thread and does not inherit the parent's pending lines."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self.writing = threading.Lock()  # one batch at a time, so batches keep their order
        self.closed = threading.Event()
        self._start_writer()
        os.register_at_fork(after_in_child=self._after_fork)

    def _start_writer(self) -> None:
        threading.Thread(target=self._write_periodically, name="log-writer", daemon=True).start()

    def _after_fork(self) -> None:
        self.pending = []
        self.writing = threading.Lock()
        if not self.closed.is_set():
            self._start_writer()

    def _write_periodically(self) -> None:
        while not self.closed.wait(FLUSH_SECONDS):
            self.flush()

    def close(self) -> None:
        self.flush()
        self.closed.set()
        super().close()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise into the caller
            self.handleError(record)
            return
        self.pending.append(line)  # emit() runs under the handler's lock
        if record.levelno >= logging.WARNING or record.name != ACCESS.name:
            self.flush()

    def flush(self) -> None:
        # The handler's lock, then `writing`: the order emit() takes them in (Handler.handle holds the lock), so
        # the writer thread and a request thread never wait for each other. `writing` is taken before the lock
        # is let go, so batches are written in the order they were taken.
        assert self.lock is not None  # Handler.__init__ creates it
        with self.lock:
            lines, self.pending = self.pending, []
            self.writing.acquire()
        try:
            if lines and self.stream is not None:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
        except (OSError, ValueError):  # the stream is closed or gone: nowhere left to write
            pass
        finally:
            self.writing.release()


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the record's extra fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
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
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    warnings.showwarning = log_warning
    # waitress warns "Task queue depth is N" for every request that waits for a free thread: under load, one
    # line per request. The in-flight gauge at /metrics says the same once.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


class RequestIds:
    """New request ids: 32 hex digits, a random prefix per process and a counter. uuid4() per request reads the
    kernel's random source each time (a system call, about 5% of a prediction's CPU); a forked worker draws its
    own prefix, so two processes never hand out the same id."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self.prefix, self.counter = uuid.uuid4().hex[:16], itertools.count()

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


REQUEST_IDS = RequestIds()


def request_id(supplied: str) -> str:
    """The client's X-Request-ID when it is a sane one, else a new id."""
    return supplied if REQUEST_ID.match(supplied) else REQUEST_IDS.new()


def is_probe(path: str) -> bool:
    return path.startswith(PROBES) or path in EXACT_PROBES


def access(method: str, path: str, status: int, latency: float, rows: int | None, request_id: str | None) -> None:
    """A request's access line (REST or gRPC), at DEBUG for a probe; `pid` says which worker answered."""
    ACCESS.log(logging.DEBUG if is_probe(path) else logging.INFO, "%s %s %s", method, path, status,
               extra={"method": method, "path": path, "status": status, "latency_ms": round(latency * 1000, 3),
                      "rows": rows, "request_id": request_id, "pid": os.getpid()})


def install(app: Flask) -> None:
    """Write each request's access line (its start time is g.started, set when the request begins)."""

    @app.after_request
    def access_line(response: Response) -> Response:
        access(request.method, request.path, response.status_code, time.perf_counter() - g.started,
               g.get("rows"), g.get("request_id"))
        return response