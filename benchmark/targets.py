"""The servers under test: started, checked, measured (memory) and stopped the same way."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from imagebuild.http_calls import call, free_port, wait_until

from . import cpu

READY_TIMEOUT = 120.0


class TargetError(Exception):
    """A server did not start, or answered something else than the model."""


@dataclass
class Route:
    """One thing to load: a path, a body (None for GET) and how to read the prediction out of the answer."""

    label: str
    path: str
    body: bytes | None
    prediction: Callable[[Any], list[float]] | None = None  # the answer's predictions; None: not a prediction route
    rows: int = 1  # rows per request


@dataclass
class Server:
    """A started server: its base URL, the processes whose memory counts, and how to stop it."""

    name: str
    port: int
    routes: list[Route]
    stop: Callable[[], None]
    root_pid: Callable[[], int]
    meter: cpu.Meter = field(default_factory=lambda: cpu.Meter(None, None))  # CPU time spent so far
    cold_start_s: float = 0.0
    image: str = "-"  # what it ships as, for the report
    log: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def post(url: str, body: bytes | None, timeout: float = 10) -> tuple[int, Any]:
    """POST a JSON body; the status and the JSON answer."""
    status, _, data = call("POST", url, body, {"Content-Type": "application/json"}, timeout)
    return status, json.loads(data) if status == 200 else None


def wait_for_prediction(server: Server, started: float, alive: Callable[[], bool]) -> float:
    """Seconds from `started` to the first successful prediction (the cold start)."""
    route = server.routes[0]
    waited = wait_until(lambda: post(server.url + route.path, route.body, timeout=2)[0] == 200,
                        READY_TIMEOUT - (time.monotonic() - started), alive, interval=0.02)
    if waited is None:
        raise TargetError(f"{server.name} gave no prediction within {READY_TIMEOUT:.0f} s (or stopped)")
    return time.monotonic() - started


def start_process(name: str, command: list[str], env: dict[str, str], port: int, routes: list[Route],
                  log: Path, cwd: Path | None = None) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    output = log.open("w")
    meter, command = cpu.for_command(name, command)
    started = time.monotonic()
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        output.close()
        meter.close()

    server = Server(name, port, routes, stop, lambda: process.pid, meter, log=log)
    try:
        server.cold_start_s = wait_for_prediction(server, started, lambda: process.poll() is None)
    except TargetError as error:
        stop()
        raise TargetError(f"{error}; its log ({log}) ends with: {log.read_text()[-1500:]}") from None
    return server


def start_container(client: Any, image: str, name: str, routes: list[Route]) -> Server:
    port = free_port()
    started = time.monotonic()
    container = client.containers.run(
        image, detach=True, network_mode="host", read_only=True, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], environment={"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": str(port)})

    def alive() -> bool:
        container.reload()
        return container.status in ("created", "running")

    def root_pid() -> int:
        container.reload()
        return container.attrs["State"]["Pid"]

    server = Server(name, port, routes, lambda: container.remove(force=True), root_pid)
    try:
        server.cold_start_s = wait_for_prediction(server, started, alive)
        server.meter = cpu.of_pid(root_pid())
    except TargetError as error:
        logs = container.logs().decode(errors="replace")[-1500:]
        container.remove(force=True)
        raise TargetError(f"{error}; its logs end with: {logs}") from None
    return server


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            todo.extend(int(child) for child in children)
    return pids


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process and its descendants: PSS (shared pages split between the processes that
    share them, so several workers are not counted twice) and the plain sum of RSS."""
    pss = rss = 0
    for current in process_tree(pid):
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue  # ended meanwhile
        pss += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:")))
        rss += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return {"pss_mb": round(pss / 1024, 1), "rss_sum_mb": round(rss / 1024, 1)}
