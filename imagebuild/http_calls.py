"""Small HTTP helpers for talking to a running service: a free port, one call, and waiting until something is
true. The publish check, the benchmark and the tests use them (standard library only)."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any
from collections.abc import Callable

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> Answer:
    """One request; an error status is an answer too (OSError only when nothing answers)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def call_json(method: str, url: str, payload: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """A JSON request (when `payload` is given) and its JSON answer (None when the body is not JSON)."""
    body = json.dumps(payload).encode() if payload is not None else None
    status, _, data = call(method, url, body, {"Content-Type": "application/json"} if body else {}, timeout)
    try:
        return status, json.loads(data)
    except ValueError:
        return status, None


def wait_until(check: Callable[[], bool], timeout: float, alive: Callable[[], bool] = lambda: True,
               interval: float = 0.1) -> float | None:
    """Seconds until `check()` is true (an OSError counts as false); None once `timeout` passes or `alive()`
    turns false."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and alive():
        try:
            if check():
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(interval)
    return None


def ready(url: str) -> bool:
    """Whether the service at `url` answers its readiness probe with 200."""
    return call("GET", url + "/health/ready", timeout=2)[0] == 200
