"""Hostile traffic at the socket level, shared by the process tests (tests/test_hostile.py) and the image's
(tests/container/test_hostile_image.py): the requests, and how to read what the server did with them."""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from imagebuild.http_calls import call, wait_until

RECORD = {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101, "s1": 157, "s2": 93.2, "s3": 38, "s4": 4, "s5": 4.8598,
          "s6": 87}
ANSWER = 188.89320316526843  # the default model's prediction for RECORD (the README's)
ANSWERED_WITHIN = 2.0  # seconds: a hostile request is answered or its connection closed by then

# Request heads no parser can take: each is answered 400 and its connection closed.
MALFORMED = {
    "lower-case method": b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    "header line without a colon": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    "bare LF in a header value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n",
    "bare CR in a header value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "garbage start line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n",
    "0xFF bytes in the path": b"GET /\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\n\r\n",
    "no start line at all": b": x\r\nHost: x\r\n\r\n",
}
# The request after each of these must never be answered: 400, and the connection closed (RFC 9112 §6.1).
SMUGGLED = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
AMBIGUOUS = {
    "Content-Length, then Transfer-Encoding": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding, then Content-Length": b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                              b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "a folded Transfer-Encoding": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                  b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "chunked twice": b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding in HTTP/1.0": b"POST /predict HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"0\r\n\r\n",
    "two Content-Lengths": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
                           b"hello",
}
HUGE_CHUNK = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + format(2 ** 80, "x").encode() + b"\r\n[{")


@dataclass
class Exchange:
    """What the server did with raw bytes: everything it sent, whether it closed, and how soon."""

    data: bytes
    closed: bool
    seconds: float

    @property
    def statuses(self) -> list[int]:
        return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", self.data)]

    @property
    def body(self) -> dict:
        return json.loads(self.data.split(b"\r\n\r\n", 1)[1])


def answered(data: bytes) -> bool:
    """Whether `data` holds at least one whole response (head, and the body its Content-Length gives)."""
    head, separator, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"\r\nContent-Length: (\d+)", head, re.I)
    return bool(separator) and len(body) >= (int(length.group(1)) if length else 0)


def exchange(port: int, payload: bytes, wait: float = ANSWERED_WITHIN, first_answer: bool = False) -> Exchange:
    """Send `payload` on a new connection and read until the server closes it (or, with `first_answer`, until
    one whole response has arrived) or `wait` seconds pass."""
    started = time.monotonic()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        try:
            connection.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):  # closed before it had all: an answer in itself
            return Exchange(data, True, time.monotonic() - started)
        connection.settimeout(0.05)
        while time.monotonic() - started < wait:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return Exchange(data, True, time.monotonic() - started)
            if not chunk:
                return Exchange(data, True, time.monotonic() - started)
            data += chunk
            if first_answer and answered(data):
                break
    return Exchange(data, False, time.monotonic() - started)


def hit_and_run(port: int, payload: bytes, times: int) -> None:
    """Send `payload` on `times` new connections, each closed by the client at once (issue 29's wedge)."""
    for _ in range(times):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(payload)


def predicts(url: str) -> bool:
    """A normal prediction, answered correctly."""
    status, _, body = call("POST", url + "/predict", json.dumps(RECORD).encode(),
                           {"Content-Type": "application/json"}, timeout=10)
    return status == 200 and json.loads(body)["predictions"] == [ANSWER]


def metrics_text(url: str) -> str:
    status, _, body = call("GET", url + "/metrics")
    assert status == 200
    return body.decode()


def open_connections(url: str) -> float:
    """http_connections_open summed over workers (sampled by each worker every quarter of a second)."""
    found = re.search(r"^http_connections_open (\S+)$", metrics_text(url), re.M)
    assert found, "no http_connections_open in /metrics"
    return float(found.group(1))


SAMPLED_WITHIN = 0.75  # seconds: each worker's event loop wakes at least every 0.5 s and samples every 0.25 s


def slots_released(url: str, timeout: float = 10.0) -> bool:
    """Whether the open connections fall back to at most the scrape's own within `timeout` seconds (first
    waiting for a sample taken after whatever came before)."""
    time.sleep(SAMPLED_WITHIN)
    return wait_until(lambda: open_connections(url) <= 1, timeout, interval=0.3) is not None


def invented_methods(port: int, count: int, threads: int = 4) -> None:
    """`count` requests with random methods, on keep-alive connections from `threads` threads."""
    def send(numbers: range) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for number in numbers:
            connection.request(f"X{number:08X}Q", "/predict")
            response = connection.getresponse()
            response.read()
            if response.will_close:
                connection.close()
        connection.close()

    workers = [threading.Thread(target=send, args=(range(i, count, threads),)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def keep_alive_clients(port: int, count: int, stop: threading.Event,
                       results: list[tuple[float, float, str]]) -> list[threading.Thread]:
    """`count` threads, each sending predictions back to back on one pooled connection (`requests.Session`),
    reconnecting when told to close. Each result: (sent, answered, outcome); "refused" is a new connection the
    server no longer accepts (never a request in flight)."""
    import requests

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = session.post(f"http://127.0.0.1:{port}/predict", json=RECORD, timeout=10)
                outcome = str(response.status_code) if response.json()["predictions"] == [ANSWER] else "wrong"
            except requests.ConnectionError as error:
                outcome = "refused" if _refused(error) else f"lost: {error!r}"
                if outcome == "refused":
                    time.sleep(0.01)
            results.append((sent, time.monotonic(), outcome))
        session.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _refused(error: BaseException) -> bool:
    """Whether a requests/urllib3 error is a refused new connection, found anywhere in its chain."""
    seen: list[BaseException] = [error]
    while seen:
        current = seen.pop()
        if isinstance(current, ConnectionRefusedError):
            return True
        seen += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                seen.append(linked)
    return False


def drain_outcome(results: list[tuple[float, float, str]], signalled: float) -> tuple[list, list]:
    """(requests that failed although sent on an accepted connection, requests in flight at the signal)."""
    failed = [r for r in results if r[2] not in ("200", "refused")]
    in_flight = [r for r in results if r[0] < signalled < r[1] and r[2] == "200"]
    return failed, in_flight


def stop_under_load(threads: list[threading.Thread], stop: threading.Event,
                    stop_server: Callable[[], Any]) -> tuple[float, float, Any]:
    """Let the client `threads` run for a second, then `stop_server()` (it returns once the server has ended);
    (when the stop began, how long it took, what stop_server returned). The clients are stopped after it."""
    try:
        time.sleep(1.0)
        signalled = time.monotonic()
        outcome = stop_server()
        return signalled, time.monotonic() - signalled, outcome
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
