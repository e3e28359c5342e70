"""The image, built once per session by the real build command, and containers run as production would."""
from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

from imagebuild import cli
from imagebuild.publish import free_port

READY_TIMEOUT = 30.0



def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="session")
def docker_client():
    import docker
    return docker.from_env(timeout=600)


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> dict[str, Any]:
    """Build with `scripts/build.py` itself (requirements check, bases, size gate included)."""
    report_path = tmp_path_factory.mktemp("build") / "report.json"
    assert cli.main(["--report", str(report_path)]) == 0, "scripts/build.py failed: see its stderr above"
    return json.loads(report_path.read_text())


class Running:
    """A started container and its base URL."""

    def __init__(self, container: Any, port: int):
        self.container, self.port = container, port
        self.url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = headers if headers is not None else ({"Content-Type": "application/json"} if data else {})
        status, response_headers, payload = http(method, self.url + path, data, headers)
        return status, response_headers, json.loads(payload) if payload else None


def wait_ready(running: Running, timeout: float = READY_TIMEOUT) -> float:
    """Seconds until /health/ready answers 200; fails with the container's logs after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        running.container.reload()
        if running.container.status == "exited":
            break
        with contextlib.suppress(OSError):
            if http("GET", running.url + "/health/ready", timeout=1)[0] == 200:
                return time.monotonic() - start
        time.sleep(0.1)
    logs = running.container.logs().decode(errors="replace")
    pytest.fail(f"container not ready within {timeout} s (status {running.container.status}); logs:\n{logs}")


@contextlib.contextmanager
def run_container(client: Any, reference: str, request: pytest.FixtureRequest,
                  environment: dict[str, str] | None = None) -> Iterator[Running]:
    """Run as production should: host network on loopback only, read-only root, no capabilities.

    If a test fails while it runs, its logs go to the real stderr; the container is always removed."""
    failures_before = request.session.testsfailed
    port = free_port()
    container = client.containers.run(
        reference, detach=True, network_mode="host", read_only=True, cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        environment={"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": str(port), **(environment or {})})
    running = Running(container, port)
    try:
        wait_ready(running)
        yield running
    finally:
        if request.session.testsfailed > failures_before:
            sys.__stderr__.write(f"\n--- logs of {container.short_id} ({request.node.name}) ---\n"
                                 + container.logs().decode(errors="replace"))
        container.remove(force=True)


@pytest.fixture(scope="module")
def served(request, docker_client, image) -> Iterator[Running]:
    """One container for a module's API tests, with the same limits as the in-process tests."""
    with run_container(docker_client, image["image"], request,
                       {"SERVICE_MAX_ROWS": "50", "SERVICE_MAX_BODY_BYTES": str(64 * 1024)}) as running:
        yield running


@pytest.fixture()
def fresh(request, docker_client, image) -> Iterator[Running]:
    """A container of one's own, for tests that stop it."""
    with run_container(docker_client, image["image"], request) as running:
        yield running

