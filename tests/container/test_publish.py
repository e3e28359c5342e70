"""Exercise 4 against a real registry: Debian's docker-registry with htpasswd auth on 127.0.0.1."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from imagebuild import BuildError, cli
from imagebuild.docker_build import revision
from imagebuild.publish import publish
from service import __version__

from .conftest import free_port

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parents[2]
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


def test_readme_publish_command_pushes_verifies_and_prints_the_digest(registry, credentials, capsys, tmp_path):
    repository = f"{registry.host}/sklearn-model-service"
    assert cli.main(["--push", repository, "--latest", "--manifests", str(tmp_path / "deploy")]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{repository}@sha256:"), out
    digest = lines[0].split("@", 1)[1]
    for manifest in ("kubernetes/deployment.yaml", "kserve/inferenceservice.yaml"):
        assert f"image: {lines[0]}\n" in (tmp_path / "deploy" / manifest).read_text()
    tags = json.loads(registry.api("/v2/sklearn-model-service/tags/list")[2])["tags"]
    assert sorted(tags) == sorted([__version__, revision(), "latest"])
    for tag in tags:
        _, headers, _ = registry.api(f"/v2/sklearn-model-service/manifests/{tag}", "HEAD",
                                     "application/vnd.docker.distribution.manifest.v2+json")
        assert headers["Docker-Content-Digest"] == digest
    assert PASSWORD not in out + err


def test_pushing_the_same_build_twice_gives_the_same_digest(registry, credentials, docker_client, image):
    repository = f"{registry.host}/twice"
    first = publish(docker_client, image["image"], repository, ["a"])
    second = publish(docker_client, image["image"], repository, ["b"])
    assert first.split("@")[1] == second.split("@")[1]


def test_docker_config_file_credentials_are_used(registry, tmp_path, monkeypatch, image):
    import docker
    monkeypatch.delenv("REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    pinned = publish(docker.from_env(timeout=600), image["image"], f"{registry.host}/from-config", ["c"])
    assert pinned.startswith(f"{registry.host}/from-config@sha256:")


def test_wrong_password_fails_with_one_clear_line_and_no_secret(registry, image):
    wrong = "Wr0ng-Secret-99"
    result = subprocess.run(
        [sys.executable, "scripts/build.py", "--push", f"{registry.host}/denied"], cwd=ROOT, capture_output=True,
        text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                     "REGISTRY_USERNAME": USER, "REGISTRY_PASSWORD": wrong})
    assert result.returncode == 1
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: login failed: the registry 127.0.0.1:") and "refused the credentials" in last
    assert wrong not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_registry_down_is_a_clear_error(credentials, docker_client, image):
    with pytest.raises(BuildError, match="unreachable"):
        publish(docker_client, image["image"], f"127.0.0.1:{free_port()}/nothing-listens", ["x"])


def test_half_given_credentials_are_refused(monkeypatch, docker_client, image):
    monkeypatch.setenv("REGISTRY_USERNAME", USER)
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    with pytest.raises(BuildError, match="set both REGISTRY_USERNAME and REGISTRY_PASSWORD"):
        publish(docker_client, image["image"], "127.0.0.1:1/x", ["x"])
