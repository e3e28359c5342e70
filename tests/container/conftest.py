"""The image, built once per session by the real build command, and containers run as production would."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import joblib

import pytest

from imagebuild import cli, debug_twin, docker_build
from imagebuild.http_calls import call, free_port, ready, wait_until

from ..locks import exclusive

READY_TIMEOUT = 60.0  # a model that imports pandas starts in about 3 s; far longer on a machine busy building images


@pytest.fixture(scope="session")
def docker_client():
    import docker
    return docker.from_env(timeout=600)


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of this run that every test process sees: with pytest-xdist, the parent of each worker's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def default_image(tmp_path_factory) -> dict[str, Any]:
    """Build with `scripts/build.py` itself (requirements check, bases, size gate included), once per run: with
    two test processes (tests/container/lanes.py), the first to need it builds and the other reads its report."""
    folder = run_folder(tmp_path_factory) / "default-image"
    folder.mkdir(exist_ok=True)
    report_path = folder / "report.json"
    with exclusive(folder / "lock"):
        if not report_path.exists():
            assert cli.main(["--report", str(report_path)]) == 0, "scripts/build.py failed: see its stderr above"
    return json.loads(report_path.read_text())


@pytest.fixture(scope="session")
def image(default_image) -> dict[str, Any]:
    """The image a test runs against: the default one (tests/container/variants.py adds --prune's per module)."""
    return default_image


PRUNED = "sklearn-model-service-pruned:test"
PRUNED_BUDGET = 172_000_000  # issue 13: --prune on the default bundle, at most 172 MB


@pytest.fixture(scope="session")
def pruned_image(tmp_path_factory, default_image, docker_client) -> Iterator[dict[str, Any]]:
    """`scripts/build.py --prune` of the default bundle; the default first, so both exist side by side."""
    report_path = tmp_path_factory.mktemp("pruned") / "report.json"
    assert cli.main(["--prune", "--tag", PRUNED, "--report", str(report_path)]) == 0, \
        "scripts/build.py --prune failed: see its stderr above"
    yield json.loads(report_path.read_text())
    remove_build(docker_client, PRUNED)


class Running:
    """A started container and its base URL."""

    def __init__(self, container: Any, port: int):
        self.container, self.port = container, port
        self.url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = headers if headers is not None else ({"Content-Type": "application/json"} if data else {})
        status, response_headers, payload = call(method, self.url + path, data, headers)
        return status, response_headers, json.loads(payload) if payload else None


def log_entries(container: Any) -> list[dict[str, Any]]:
    """A container's JSON log lines, parsed (the lines before logging is set up are plain text)."""
    return [json.loads(line) for line in container.logs().decode().splitlines() if line.startswith("{")]


def wait_ready(running: Running, timeout: float = READY_TIMEOUT) -> float:
    """Seconds until /health/ready answers 200; fails with the container's logs after `timeout`."""
    def alive() -> bool:
        running.container.reload()
        return running.container.status != "exited"

    waited = wait_until(lambda: ready(running.url), timeout, alive)
    if waited is not None:
        return waited
    logs = running.container.logs().decode(errors="replace")
    pytest.fail(f"container not ready within {timeout} s (status {running.container.status}); logs:\n{logs}")


@contextlib.contextmanager
def run_container(client: Any, reference: str, request: pytest.FixtureRequest,
                  environment: dict[str, str] | None = None, port_variable: str = "SERVICE_PORT",
                  ready_timeout: float = READY_TIMEOUT, **options: Any) -> Iterator[Running]:
    """Run as production should: host network on loopback only, read-only root, no capabilities; the port goes
    to `port_variable` (a platform's own, say); `options` go to the docker SDK's containers.run (a memory limit,
    a command, a platform); `ready_timeout` is longer for an image run under emulation.

    If a test fails while it runs, its logs go to the real stderr; the container is always removed."""
    failures_before = request.session.testsfailed
    port = free_port()
    container = client.containers.run(
        reference, detach=True, network_mode="host", read_only=True, cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        environment={"SERVICE_HOST": "127.0.0.1", port_variable: str(port), **(environment or {})}, **options)
    running = Running(container, port)
    try:
        wait_ready(running, ready_timeout)
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


BUDGET_MB = "400"  # pandas adds about 30 MB to the default image's 191 MB: these builds take their own budget
MEASURED = Path(__file__).resolve().parents[2] / "reports" / "byo-builds.json"  # sizes and times, for notes


def tag(kind: str) -> str:
    return f"byo-{kind}:test"


class Builds:
    """Builds each kind once, on first use, with `scripts/build.py --model ... --sample ... [--code ...]`."""

    def __init__(self, trained: dict[str, Any], folder: Path):
        self.trained, self.folder, self.reports = trained, folder, {}

    def files(self, kind: str) -> tuple[Path, Path]:
        model, sample = self.folder / f"{kind}.joblib", self.folder / f"{kind}-sample.csv"
        if not model.exists():
            joblib.dump(self.trained[kind].model, model)
            self.trained[kind].sample.to_csv(sample, index=False)
        return model, sample

    def __call__(self, kind: str) -> dict[str, Any]:
        if kind not in self.reports:
            model, sample = self.files(kind)
            report = self.folder / f"{kind}-report.json"
            arguments = ["--model", str(model), "--sample", str(sample), "--tag", tag(kind),
                         "--size-budget", BUDGET_MB, "--report", str(report)]
            if self.trained[kind].code:
                arguments += ["--code", str(self.trained[kind].code)]
            started = time.monotonic()
            assert cli.main(arguments) == 0, f"scripts/build.py {' '.join(arguments)} failed: see its stderr"
            self.reports[kind] = {**json.loads(report.read_text()), "seconds": round(time.monotonic() - started, 1)}
            MEASURED.parent.mkdir(exist_ok=True)
            MEASURED.write_text(json.dumps({k: {"size": r["size"], "compressed": r["compressed_size"],
                                                "seconds": r["seconds"], "notes": r["model"]["notes"]}
                                            for k, r in self.reports.items()}, indent=2))
        return self.reports[kind]


def remove_build(client: Any, reference: str) -> None:
    """What a build of `reference` left on the engine: the image, its builder (or, for another platform's image,
    its venv's build), the image as built, the debug twin and their untagged predecessors."""
    import docker.errors
    twin = debug_twin.reference(reference)
    for name in (twin, docker_build.cache_reference(twin), reference, docker_build.builder_reference(reference),
                 docker_build.cross_reference(reference), docker_build.cache_reference(reference),
                 docker_build.stage_reference(reference)):
        try:
            client.images.remove(name)
        except docker.errors.ImageNotFound:
            pass
    docker_build.prune_superseded(client, reference)


@pytest.fixture()
def twin_removed(docker_client) -> Iterator[None]:
    """The default image's debug twin (`--debug`) and its as-built image are removed after the test."""
    import docker.errors
    yield
    twin = debug_twin.reference(f"{cli.REPOSITORY}:{cli.service_version()}")
    for name in (twin, docker_build.cache_reference(twin)):
        try:
            docker_client.images.remove(name)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture(scope="session")
def byo(trained, tmp_path_factory, default_image, docker_client) -> Iterator[Builds]:
    """The default image first: it and its builder must survive these builds, which are removed after."""
    builds = Builds(trained, tmp_path_factory.mktemp("byo"))
    yield builds
    for kind in builds.reports:
        remove_build(docker_client, tag(kind))


USER, PASSWORD = "publisher", "s3cret-Token-4711"


class Registry:
    def __init__(self, port: int):
        self.port = port
        self.host = f"127.0.0.1:{port}"

    def api(self, path: str, method: str = "GET", accept: str = "application/json") -> tuple[int, dict, bytes]:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(f"http://{self.host}{path}", method=method,
                                         headers={"Authorization": f"Basic {token}", "Accept": accept})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()


def remove_images_of(client, host: str) -> None:
    """Untag and remove what the tests pushed and pulled back, so runs leave nothing behind."""
    for image in client.images.list():
        for reference in image.tags + image.attrs.get("RepoDigests", []):
            if reference.startswith(host + "/"):
                client.images.remove(reference, force=True, noprune=False)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, docker_client) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("registry")
    subprocess.run(["htpasswd", "-iBc", str(root / "htpasswd"), USER], input=PASSWORD, text=True, check=True,
                   capture_output=True)
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {root / 'htpasswd'}\n")
    # Its log goes to a file: an unread pipe fills up with access lines and blocks the registry mid-push.
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=log,
                               stderr=subprocess.STDOUT)
    registry = Registry(port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=1)
            except urllib.error.HTTPError as error:
                if error.code == 401:  # up, and asking for credentials
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
                time.sleep(0.2)
        yield registry
    finally:
        remove_images_of(docker_client, registry.host)
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture()
def credentials(monkeypatch):
    monkeypatch.setenv("REGISTRY_USERNAME", USER)
    monkeypatch.setenv("REGISTRY_PASSWORD", PASSWORD)
