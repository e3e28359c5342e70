"""Exercise 4 against a real registry: Debian's docker-registry with htpasswd auth on 127.0.0.1."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imagebuild import BuildError, cli
from imagebuild.docker_build import revision
from imagebuild.platforms import AMD64
from imagebuild.publish import publish
from service import __version__

from .conftest import PASSWORD, USER, free_port

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parents[2]
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


def test_the_debug_twin_is_pushed_only_with_debug_and_recorded(registry, credentials, capsys, tmp_path,
                                                                 twin_removed):
    repository = f"{registry.host}/with-twin"
    report = tmp_path / "report.json"
    assert cli.main(["--push", repository, "--debug", "--report", str(report)]) == 0
    out, _ = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1, "the twin's digest must not reach stdout"
    tags = json.loads(registry.api("/v2/with-twin/tags/list")[2])["tags"]
    assert sorted(tags) == sorted([__version__, revision(), f"{__version__}-debug", f"{revision()}-debug"])
    _, headers, _ = registry.api(f"/v2/with-twin/manifests/{__version__}-debug", "HEAD",
                                 "application/vnd.docker.distribution.manifest.v2+json")
    statement = json.loads(report.with_name("report.provenance.json").read_text())
    twin = [item for item in statement["predicate"]["runDetails"]["byproducts"] if item["name"] == "debug-twin"]
    assert twin[0]["annotations"]["pushed"] == f"{repository}@{headers['Docker-Content-Digest']}"
    assert statement["subject"][1]["digest"]["sha256"] == out.strip().split("@sha256:")[1]


def test_pushing_the_same_build_twice_gives_the_same_digest(registry, credentials, docker_client, image):
    repository = f"{registry.host}/twice"
    first = publish(docker_client, [(AMD64, image["image"])], repository, ["a"]).reference
    second = publish(docker_client, [(AMD64, image["image"])], repository, ["b"]).reference
    assert first.split("@")[1] == second.split("@")[1]


def test_docker_config_file_credentials_are_used(registry, tmp_path, monkeypatch, image):
    import docker
    monkeypatch.delenv("REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    pinned = publish(docker.from_env(timeout=600), [(AMD64, image["image"])], f"{registry.host}/from-config",
                     ["c"]).reference
    assert pinned.startswith(f"{registry.host}/from-config@sha256:")


@pytest.mark.parametrize("password", ["Wr0ng-Secret-99", None])
def test_wrong_or_missing_credentials_fail_before_the_build_in_one_line_without_the_secret(registry, image, password):
    credentials = {"REGISTRY_USERNAME": USER, "REGISTRY_PASSWORD": password} if password else {}
    result = subprocess.run(
        [sys.executable, "scripts/build.py", "--tag", "never-built:1", "--push", f"{registry.host}/denied"], cwd=ROOT,
        capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                                         **credentials})
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.strip().splitlines()  # one line: the build never began (its progress goes to stderr)
    assert len(lines) == 1 and lines[0].startswith(
        f"error: --push {registry.host}/denied: the registry {registry.host} refused the credentials"), lines
    assert "REGISTRY_USERNAME/REGISTRY_PASSWORD" in lines[0]
    assert password is None or password not in result.stderr


def test_registry_down_is_a_clear_error(credentials, docker_client, image):
    with pytest.raises(BuildError, match="unreachable"):
        publish(docker_client, [(AMD64, image["image"])], f"127.0.0.1:{free_port()}/nothing-listens", ["x"])


def test_half_given_credentials_are_refused(monkeypatch, docker_client, image):
    monkeypatch.setenv("REGISTRY_USERNAME", USER)
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    with pytest.raises(BuildError, match="set both REGISTRY_USERNAME and REGISTRY_PASSWORD"):
        publish(docker_client, [(AMD64, image["image"])], "127.0.0.1:1/x", ["x"])
