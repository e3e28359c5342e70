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
bundle is reported once, and the first worker serves while the others load. When BOOT_FAILURES workers in a
row die before they are ready (a full /dev/shm kills each with SIGBUS as it creates its metrics), the supervisor
stops with exit code 3 and one line saying so, and the container's restart policy or Kubernetes starts afresh:
a container that only replaced crashing workers would stay "Up" without serving.

Metrics are summed over workers through prometheus_client's multiprocess mode, in a private folder under
/dev/shm (a tmpfs even in a read-only container).
"""
from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from . import cpus as cpu_limits
from .config import worker_count
from .shares import Share, Shares

log = logging.getLogger("service")
# File descriptors a worker needs beyond its connections: the listener, the trigger, logs, metrics files, gRPC.
SPARE_FILES = 256
START_ERROR = 2  # a worker's exit code for "cannot start": bad bundle or setting; retrying cannot help
WORKERS_FAILING = 3  # the supervisor's exit code when workers keep dying before they are ready
BOOT_FAILURES = 5  # that many in a row (gunicorn halts on the first; a worker may die of a passing cause)
RESPAWN_PAUSE = 1.0  # seconds before replacing a worker that died within this long of starting
STOP_GRACE = 2.0  # seconds past DRAIN_SECONDS before a worker that has not left is killed


def pin(index: int, cpus: list[int]) -> None:
    """Bind this process to one CPU (worker `index` gets the index-th usable CPU, round robin)."""
    os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def serve_worker(listener: socket.socket, worker: int, ready_fd: int | None = None,
                 parent: int | None = None, decision: Mapping[str, Any] | None = None,
                 share: Share | None = None) -> int:
    """Load, check and warm up the model, then serve until SIGTERM/SIGINT. Exit code for the process.

    `ready_fd`, if given, gets one byte once the model is loaded and a SIGTERM would drain; `parent` is the
    supervisor's pid: the worker stops when it is no longer its parent. A lone worker's `decision` (the worker
    count and which limit set it) joins its ready line; one of several has a `share` (service/shares.py)."""
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
    except Exception as exc:  # whatever else fails at start-up: one line, and DEBUG has the rest
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

    def serving() -> None:  # SIGTERM now drains this worker: the supervisor may count it ready (and stop it last)
        if ready_fd is not None:
            os.write(ready_fd, b"r")
            os.close(ready_fd)

    rpc = start_grpc(app)
    serve(app, listener, parent, serving, rpc.stop if rpc else lambda _: None, share)
    if rpc:
        rpc.stop(0)  # whatever the drain left running
    return 0


def start_grpc(app: Any) -> Any:
    """This worker's gRPC server (service/grpc_v2), or None when SERVICE_GRPC_PORT is 0."""
    port = app.config["GRPC_PORT"]
    if not port:
        return None
    from .grpc_v2.server import start
    server = start(app, app.config["HOST"], port)
    log.info("gRPC on %s:%s", app.config["HOST"], port, extra={"grpc_port": port, "pid": os.getpid()})
    return server


def check_grpc_port(settings: Mapping[str, Any]) -> str | None:
    """Why gRPC cannot be served as set, or None: SERVICE_GRPC_PORT set in an image without gRPC, or the port
    taken (the workers share it with SO_REUSEPORT, so only a bind without it can tell)."""
    from . import grpc_v2
    port = settings["GRPC_PORT"]
    if not port:
        return None
    if not grpc_v2.available():
        return f"SERVICE_GRPC_PORT={port}: this image has no gRPC (grpcio); build it with scripts/build.py --grpc"
    family = socket.AF_INET6 if ":" in settings["HOST"] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds: past connections don't count
        try:
            probe.bind((settings["HOST"], port))
        except OSError as exc:
            return f"cannot serve gRPC on {settings['HOST']}:{port}: {exc} (set SERVICE_GRPC_PORT, 0 for none)"
    return None


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


def allow_open_files(connection_limit: int) -> int:
    """Raise this process's soft limit on open files (inherited by its workers) to what `connection_limit`
    connections need, up to the hard limit, which a container usually sets high (Docker: 1,048,576) while the
    soft one is often 1,024; returns the connections the limit now allows (less than asked only where the hard
    limit is lower)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connection_limit + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return connection_limit if soft == resource.RLIM_INFINITY else min(connection_limit, soft - SPARE_FILES)


def run(settings: Mapping[str, Any]) -> int:
    """Serve with the configured number of workers; the process's exit code."""
    budget = cpu_limits.budget()
    count, cpus = worker_count(settings, budget.count), list(budget.cpus)
    # which limit set the worker count: the start-up log line says it (the single worker's, or the supervisor's)
    decision = {"workers": count, "decided_by": "SERVICE_WORKERS" if settings["WORKERS"] else budget.decided_by,
                "cpu_quota": budget.quota}
    allowed = allow_open_files(settings["CONNECTION_LIMIT"])
    if allowed < settings["CONNECTION_LIMIT"]:  # accept() would fail past it, with connections waiting
        log.warning("the open-files limit allows %d connections per worker, not SERVICE_CONNECTION_LIMIT=%d: "
                    "serving with %d (raise it: docker run --ulimit nofile=N)", allowed, settings["CONNECTION_LIMIT"],
                    allowed, extra={"connection_limit": allowed})
        os.environ["SERVICE_CONNECTION_LIMIT"] = str(allowed)  # read by each worker's app
    problem = check_grpc_port(settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return START_ERROR
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
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Worker:
    """A started worker: its index, when it started, and the pipe it says "ready" on (None once it has)."""

    index: int
    started: float
    ready_pipe: int | None


class Supervisor:
    """Starts the workers, replaces those that die, stops them all on SIGTERM/SIGINT, and gives up when workers
    keep dying before they are ready (gunicorn's worker boot error): replacing them could only repeat that."""

    def __init__(self, listener: socket.socket, count: int, cpus: list[int], settings: Mapping[str, Any],
                 decision: Mapping[str, Any] | None = None):
        self.listener, self.count, self.cpus, self.settings = listener, count, cpus, settings
        self.decision = dict(decision or {"workers": count})
        self.children: dict[int, Worker] = {}  # pid -> worker
        self.waiting = list(range(1, count))  # started once a first worker is ready: a bad bundle is told once
        self.pid = os.getpid()
        self.deadline: float | None = None  # set when stopping
        self.stop_requested = False  # set by the signal handler; the loop does the stopping
        self.wake_read, self.wake_write = os.pipe()  # a signal writes here, so the loop's wait ends at once
        os.set_blocking(self.wake_write, False)
        self.signalled: set[int] = set()  # workers sent SIGTERM
        self.boot_failures = 0  # workers in a row that died before they were ready
        self.exit_code = 0
        self.shares = Shares(count)  # mapped before any fork: each worker sees the others' connections

    def start(self, index: int) -> None:
        """Fork worker `index`; it writes one byte to its pipe once it has loaded the model.

        SIGTERM and SIGINT are blocked across the fork: a stop sent to the new worker before it has set their
        default action would otherwise run the supervisor's handler, inherited, and be lost (seen in CI: a worker
        signalled as it was forked served on until killed at the drain limit). Blocked, the signal waits, and
        ends a worker still loading the model as soon as it unblocks."""
        ready_read, ready_write = os.pipe()
        stops = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
                os.close(ready_read)
                signal.set_wakeup_fd(-1)
                os.close(self.wake_read)
                os.close(self.wake_write)
                for worker in self.children.values():  # the others' pipes are not this worker's
                    if worker.ready_pipe is not None:
                        os.close(worker.ready_pipe)
                if self.settings["PIN_CPUS"]:
                    pin(index, self.cpus)
                code = serve_worker(self.listener, index, ready_write, self.pid, share=Share(self.shares, index))
            except BaseException:  # logged, then the process ends with code 1
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        os.close(ready_write)
        self.children[pid] = Worker(index, time.monotonic(), ready_read)

    def request_stop(self, *_signal: Any) -> None:
        """The signal handler: only notes the request (the loop acts on it)."""
        self.stop_requested = True

    def stop(self) -> None:
        """Stop the workers: first those not serving yet, then, once they are gone, those serving. The last
        process holding the listening socket is then one that takes in every connection the kernel has queued
        before it closes it; a worker still loading the model would hold the socket without ever accepting, and
        the connections queued meanwhile would be reset when it ends."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.settings["DRAIN_SECONDS"] + STOP_GRACE
            self.listener.close()  # only the workers' copies remain; they close theirs as they drain
        loading = [pid for pid, worker in self.children.items() if worker.ready_pipe is not None]
        for pid in (loading or list(self.children)):
            if pid not in self.signalled:
                os.kill(pid, signal.SIGTERM)
                self.signalled.add(pid)

    def run(self) -> int:
        from .metrics import fold_dead_worker  # imports prometheus_client: only once its folder is set
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.set_wakeup_fd(self.wake_write)
        self.start(0)
        while self.children:
            if self.stop_requested:
                self.stop()
            self.read_ready(timeout=0.05)
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    for straggler in self.children:
                        os.kill(straggler, signal.SIGKILL)
                continue
            if pid not in self.children:  # not a worker (a library's helper process, say): reaped, nothing more
                continue
            worker = self.children.pop(pid)
            self.shares.leave(worker.index)  # the others stop comparing themselves with it at once
            if worker.ready_pipe is not None:
                os.close(worker.ready_pipe)
            if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
                fold_dead_worker(pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
            self.replace(worker, os.waitstatus_to_exitcode(status))
        return self.exit_code

    def read_ready(self, timeout: float) -> None:
        """Wait up to `timeout` for a worker to say it is ready (or a signal to arrive); the first one ready
        starts the others."""
        pipes = {worker.ready_pipe: worker for worker in self.children.values() if worker.ready_pipe is not None}
        readable, _, _ = select.select([self.wake_read, *pipes], [], [], timeout)
        for pipe in readable:
            if pipe == self.wake_read:
                os.read(pipe, 512)  # the signals' bytes; their handler has already run
                continue
            worker = pipes[pipe]
            if os.read(pipe, 1) != b"r":  # EOF: it died before it was ready; reaped by the loop
                continue
            os.close(pipe)
            worker.ready_pipe = None
            self.boot_failures = 0
            if self.waiting and not self.stop_requested:  # not during a stop, nor just before it is acted on
                for index in self.waiting:
                    self.start(index)
                self.waiting = []
                log.info("%d workers started (%s)", self.count, self.decision.get("decided_by", "SERVICE_WORKERS"),
                         extra={**self.decision, "cpus": self.cpus,
                                "metrics_folder": os.environ["PROMETHEUS_MULTIPROC_DIR"]})

    def replace(self, worker: Worker, code: int) -> None:
        """A worker left: during a stop that is expected; otherwise start another, unless it cannot start or
        workers keep dying before they are ready."""
        if self.stop_requested:
            return
        if code == START_ERROR:  # the worker has said why, in one line
            self.exit_code = START_ERROR
            self.stop_requested = True
            return
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        if worker.ready_pipe is not None:
            self.boot_failures += 1
            if self.boot_failures >= BOOT_FAILURES:
                print(f"error: {BOOT_FAILURES} workers in a row died before they were ready (the last {how}); "
                      f"stopping so that the container is restarted (a full /dev/shm or too little memory?)",
                      file=sys.stderr)
                self.exit_code = WORKERS_FAILING
                self.stop_requested = True
                return
        log.error("worker %d %s; starting another", worker.index, how)
        if time.monotonic() - worker.started < RESPAWN_PAUSE:
            time.sleep(RESPAWN_PAUSE)
        self.start(worker.index)
