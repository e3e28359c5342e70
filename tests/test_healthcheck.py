"""The image's HEALTHCHECK command (`python -m service.healthcheck`) against a real socket: healthy only on 200."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import healthcheck


@pytest.fixture()
def answering(monkeypatch) -> Iterator[list[bytes]]:
    """A local server that answers each connection with the next of the answers the test appends, and records
    what it was sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    answers: list[bytes] = []
    sent: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                sent.append(connection.recv(4096))
                connection.sendall(answers.pop(0))

    monkeypatch.setenv("SERVICE_HOST", "0.0.0.0")
    monkeypatch.setenv("SERVICE_PORT", str(listener.getsockname()[1]))
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield answers
    listener.close()
    assert all(request.startswith(b"GET /health/ready HTTP/1.0\r\n") for request in sent), sent


def test_healthy_only_when_ready_answers_200(answering, capsys):
    answering += [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\n\r\n",
                  b"", b"garbage\r\n"]
    assert healthcheck.main() == 0
    assert healthcheck.main() == 1 and "503 SERVICE UNAVAILABLE" in capsys.readouterr().err
    assert healthcheck.main() == 1 and "no answer" in capsys.readouterr().err
    assert healthcheck.main() == 1 and "garbage" in capsys.readouterr().err


def test_nothing_listening_is_unhealthy_in_one_line(monkeypatch, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    monkeypatch.setenv("SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("SERVICE_PORT", str(port))
    assert healthcheck.main() == 1
    err = capsys.readouterr().err
    assert err.startswith(f"unhealthy: http://127.0.0.1:{port}/health/ready: ") and err.count("\n") == 1


def test_it_does_not_import_ssl():
    """The reason it speaks HTTP itself: a process half the size inside the container's memory limit."""
    code = "import sys, service.healthcheck; print('ssl' in sys.modules, 'urllib.request' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.stdout.split() == ["False", "False"]
