"""Slow clients cannot starve the others: connections that trickle a request (a header line every few seconds)
are closed once SERVICE_REQUEST_TIMEOUT has passed since their first byte, and normal requests keep being
answered. Two workers of 100 connections each (SERVICE_CONNECTION_LIMIT; the default is 1,500): 200 trickling
connections fill every slot."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from imagebuild.http_calls import call

from .conftest import run_container

pytestmark = pytest.mark.container
SLOW = 200
TIMEOUT = 5.0
TRICKLE_EVERY = 3.0
DURATION = 20.0


def trickle(port: int, closed_after: dict[int, float], stop: threading.Event) -> None:
    """Open SLOW connections, send a request line, then a header line every TRICKLE_EVERY seconds on each."""
    started = time.monotonic()
    connections = {}
    for number in range(SLOW):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: slow\r\n")
        connection.setblocking(False)
        connections[number] = connection
    while not stop.is_set() and len(closed_after) < SLOW:
        stop.wait(TRICKLE_EVERY)
        for number, connection in connections.items():
            if number in closed_after:
                continue
            try:
                if connection.recv(1024) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                pass
            except OSError:
                closed_after[number] = time.monotonic() - started
                continue
            try:
                connection.sendall(b"X-Slow: still here\r\n")
            except OSError:
                closed_after[number] = time.monotonic() - started
    for connection in connections.values():
        connection.close()


def test_trickling_clients_are_cut_off_and_others_are_served(docker_client, image, request):
    environment = {"SERVICE_REQUEST_TIMEOUT": str(TIMEOUT), "SERVICE_WORKERS": "2",
                   "SERVICE_CONNECTION_LIMIT": "100"}
    with run_container(docker_client, image["image"], request, environment) as running:
        closed_after: dict[int, float] = {}
        stop = threading.Event()
        attacker = threading.Thread(target=trickle, args=(running.port, closed_after, stop), daemon=True)
        attacker.start()
        time.sleep(1.0)  # every slot taken
        latencies, statuses = [], []
        deadline = time.monotonic() + DURATION
        while time.monotonic() < deadline:
            sent = time.monotonic()
            status, _, _ = call("GET", running.url + "/health/ready", timeout=30)
            latencies.append(time.monotonic() - sent)
            statuses.append(status)
            time.sleep(0.5)
        stop.set()
        attacker.join(timeout=30)
        logs = running.container.logs().decode()
    assert set(statuses) == {200}
    # the worst case: a request queued behind a full set of slow connections, twice (some of them waited in the
    # listen backlog and only began their clock once accepted), plus the event loop's period
    assert max(latencies) < 2 * TIMEOUT + 2, latencies
    assert sum(latency < 1 for latency in latencies) > len(latencies) / 2, latencies
    assert len(closed_after) == SLOW, f"{SLOW - len(closed_after)} slow connections were never closed"
    assert "had not sent a whole request within 5 s" in logs
