"""Worker processes: by default one per usable CPU, each bound to its own CPU, sharing one listening socket.

Why both: CPython runs one thread at a time per process, and waitress hands every request from its I/O thread
to a worker thread and back. When those threads sit on different CPUs each hand-off waits for the other CPU
to be scheduled; bound to one CPU the hand-offs are cheap. Measured here on 2 CPUs, 32 connections, a
trivial route: one unbound process about 2,700 requests/s, one bound process about 11,000. Throughput then
grows with processes, one per CPU.

With more than one worker the first process only supervises: it binds the socket, starts the workers (each
loads and checks the model itself, so nothing an estimator started, such as an OpenMP pool, crosses a fork),
forwards SIGTERM/SIGINT, starts a new worker if one dies, and stops with exit code 2 if a worker cannot start
(a bad bundle or setting). The first worker starts alone and the others once it has loaded the model: a bad
bundle is reported once, and the first worker serves while the others load. Metrics are summed over workers through prometheus_client's multiprocess mode, in
a private folder under /dev/shm (a tmpfs even in a read-only container).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any, Mapping

from . import cpus as cpu_limits
from .config import worker_count

log = logging.getLogger("service")
START_ERROR = 2  # a worker's exit code for "cannot start": bad bundle or setting; retrying cannot help
RESPAWN_PAUSE = 1.0  # seconds before replacing a worker that died within this long of starting
STOP_GRACE = 2.0  # seconds past DRAIN_SECONDS before a worker that has not left is killed


def pin(index: int, cpus: list[int]) -> None:
    """Bind this process to one CPU (worker `index` gets the index-th usable CPU, round robin)."""
    os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def serve_worker(listener: socket.socket, worker: int, ready_fd: int | None = None,
                 parent: int | None = None, decision: Mapping[str, Any] | None = None) -> int:
    """Load, check and warm up the model, then serve until SIGTERM/SIGINT. Exit code for the process.

    `ready_fd`, if given, gets one byte once the model is loaded (the supervisor waits for it); `parent` is the
    supervisor's pid: the worker stops when it is no longer its parent. A lone worker's `decision` (the worker
    count and which limit set it) joins its ready line."""
    from .app import create_app
    from .bundle import BundleError
    from .config import ConfigError
    from .server import serve
    from .state import EXTENSION
    try:
        app = create_app()
    except (BundleError, ConfigError) as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return START_ERROR
    except Exception as exc:  # noqa: BLE001 - whatever else fails at start-up: one line, and DEBUG has the rest
        log.debug("start-up failed", exc_info=True)
        message = " ".join(str(exc).split())
        print(f"error: start-up failed: {type(exc).__name__}: {message} (SERVICE_LOG_LEVEL=DEBUG logs the "
              f"traceback)", file=sys.stderr)
        return START_ERROR
    service = app.extensions[EXTENSION]
    card = service.bundle.card
    log.info("model %s %s ready", card["name"], card["version"], extra={
        "model": card["name"], "model_version": card["version"], "sha256": card["artifact"]["sha256"],
        "worker": worker, "pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0)),
        "inference": service.predictor.inference["path"], "micro_batching": service.predictor.batcher is not None,
        **(decision or {})})
    if ready_fd is not None:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    serve(app, listener, parent)
    return 0


def listen(settings: Mapping[str, Any]) -> socket.socket:
    """The socket every worker accepts on (waitress' own default backlog)."""
    family = socket.AF_INET6 if ":" in settings["HOST"] else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings["HOST"], settings["PORT"]))
    listener.listen(1024)
    return listener


def metrics_folder() -> str:
    """A private folder for prometheus_client's multiprocess files; set before prometheus_client is imported."""
    parents = ["/dev/shm"]  # a tmpfs in Docker and Kubernetes, even with a read-only root
    with contextlib.suppress(OSError):  # a read-only root has no usable temporary folder at all
        parents.append(tempfile.gettempdir())
    for parent in parents:
        try:
            folder = tempfile.mkdtemp(prefix="service-metrics-", dir=parent)
        except OSError:
            continue
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        return folder
    raise OSError(f"no writable folder for the workers' shared metrics (tried {', '.join(parents)}); "
                  f"mount a tmpfs at /dev/shm or set SERVICE_WORKERS=1")


def run(settings: Mapping[str, Any]) -> int:
    """Serve with the configured number of workers; the process's exit code."""
    budget = cpu_limits.budget()
    count, cpus = worker_count(settings, budget.count), list(budget.cpus)
    # which limit set the worker count: the start-up log line says it (the single worker's, or the supervisor's)
    decision = {"workers": count, "decided_by": "SERVICE_WORKERS" if settings["WORKERS"] else budget.decided_by,
                "cpu_quota": budget.quota}
    try:
        listener = listen(settings)
        folder = metrics_folder() if count > 1 else None
    except OSError as exc:
        print(f"error: cannot serve on {settings['HOST']}:{settings['PORT']}: {exc} "
              f"(another server on that port? set SERVICE_PORT)", file=sys.stderr)
        return START_ERROR
    if count == 1:  # this process serves, with no supervisor
        if settings["PIN_CPUS"]:
            pin(0, cpus)
        return serve_worker(listener, 0, decision=decision)
    try:
        return Supervisor(listener, count, cpus, settings, decision).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Supervisor:
    """Starts the workers, replaces those that die, and stops them all on SIGTERM/SIGINT."""

    def __init__(self, listener: socket.socket, count: int, cpus: list[int], settings: Mapping[str, Any],
                 decision: Mapping[str, Any] | None = None):
        self.listener, self.count, self.cpus, self.settings = listener, count, cpus, settings
        self.decision = dict(decision or {"workers": count})
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)
        self.pid = os.getpid()
        self.deadline: float | None = None  # set when stopping
        self.exit_code = 0

    def start(self, index: int, wait: bool = False) -> bool:
        """Start worker `index`; with `wait`, return only once it has loaded the model (True) or died (False)."""
        ready_read, ready_write = os.pipe() if wait else (None, None)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                if ready_read is not None:
                    os.close(ready_read)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if self.settings["PIN_CPUS"]:
                    pin(index, self.cpus)
                code = serve_worker(self.listener, index, ready_write, self.pid)
            except BaseException:  # noqa: BLE001 - logged, then the process ends with code 1
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())
        if ready_read is None:
            return True
        os.close(ready_write)
        try:
            return os.read(ready_read, 1) == b"r"  # EOF: the worker ended before it was ready
        finally:
            os.close(ready_read)

    def stop(self, *_signal: Any) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.settings["DRAIN_SECONDS"] + STOP_GRACE
            self.listener.close()  # only the workers' copies remain; they close theirs as they drain
        for pid in self.children:
            os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        from prometheus_client import multiprocess
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if self.start(0, wait=True):
            for index in range(1, self.count):
                self.start(index)
            log.info("%d workers started (%s)", self.count, self.decision.get("decided_by", "SERVICE_WORKERS"),
                     extra={**self.decision, "cpus": self.cpus,
                            "metrics_folder": os.environ["PROMETHEUS_MULTIPROC_DIR"]})
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    for straggler in self.children:
                        os.kill(straggler, signal.SIGKILL)
                time.sleep(0.05)
                continue
            if pid not in self.children:  # not a worker (a library's helper process, say): reaped, nothing more
                continue
            index, started = self.children.pop(pid)
            multiprocess.mark_process_dead(pid)
            self.replace(index, started, os.waitstatus_to_exitcode(status))
        return self.exit_code

    def replace(self, index: int, started: float, code: int) -> None:
        """A worker left: during a stop that is expected; otherwise start another, unless it cannot start."""
        if self.deadline is not None:
            return
        if code == START_ERROR:  # the worker has said why, in one line
            self.exit_code = START_ERROR
            self.stop()
            return
        log.error("worker %d exited with code %d; starting another", index, code)
        if time.monotonic() - started < RESPAWN_PAUSE:
            time.sleep(RESPAWN_PAUSE)
        self.start(index)
