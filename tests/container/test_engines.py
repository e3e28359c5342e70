"""The build where users have Docker (issue 22): Debian 13's Docker 26 beside the suite's engine
(scripts/debian13-engine.sh), with the overlay2 image store and with the containerd one (the default of Docker
Desktop 4.34+ and of fresh Docker Engine 29 installs). On each: the README's build gives the suite's image id
and serves the right answer; a bring-your-own DataFrame model builds and answers as model.predict; `--push`
gives the same manifest digest as the suite's engine, pulled back by digest and run. First of all, on a fresh
engine, a user who is not root and has no Debian tools on its PATH builds the image, bases included: the suite's
image id and SBOM, from another builder (issue 15's clean build: the suite's engine is not cleaned, since the
other lane of tests runs its images meanwhile)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import docker
import pytest

from imagebuild import cli
from imagebuild.platforms import AMD64
from imagebuild.publish import publish

from ..hostile import ANSWER, RECORD
from .conftest import BUDGET_MB, PASSWORD, USER as USER_OF_REGISTRY, run_container, tag

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parents[2]
USER = "sms-builder"  # a user in the docker group, nothing more
DEBIAN_TOOLS = ("mmdebstrap", "dpkg-deb", "dpkg", "apt-get", "debootstrap")


@dataclass
class Engine:
    store: str
    host: str
    client: Any


@contextlib.contextmanager
def started(store: str) -> Iterator[Engine]:
    """Debian 13's engine with this image store, started if it is not running, stopped after."""
    result = subprocess.run(["bash", "scripts/debian13-engine.sh", "start", store], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    host = result.stdout.strip()
    client = docker.DockerClient(base_url=host, timeout=600)
    assert client.version()["Version"].startswith("26."), client.version()["Version"]
    try:
        yield Engine(store, host, client)
    finally:
        client.close()
        subprocess.run(["bash", "scripts/debian13-engine.sh", "stop", store], cwd=ROOT, timeout=120)


@pytest.fixture(scope="module", params=["overlay2", "containerd"])
def engine(request) -> Iterator[Engine]:
    """The engine with this store; afterwards its images are deleted (about 3 GB a store), so the rest of the
    suite keeps the disk: each store's tests are its last user in the suite."""
    with started(request.param) as running:
        yield running
    subprocess.run(["bash", "scripts/debian13-engine.sh", "wipe", request.param], cwd=ROOT, timeout=120)


@contextlib.contextmanager
def docker_host(host: str) -> Iterator[None]:
    """The build's own client (docker.from_env) talks to `host` meanwhile."""
    before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    try:
        yield
    finally:
        if before is None:
            del os.environ["DOCKER_HOST"]
        else:
            os.environ["DOCKER_HOST"] = before


def build(engine: Engine, folder: Path, *arguments: str) -> dict[str, Any]:
    report = folder / f"report-{engine.store}-{len(list(folder.iterdir()))}.json"
    with docker_host(engine.host):
        assert cli.main([*arguments, "--report", str(report)]) == 0, f"the build on Docker 26 ({engine.store}) failed"
    return json.loads(report.read_text())


def predicts(engine: Engine, reference: str, request) -> None:
    with run_container(engine.client, reference, request) as running:
        status, _, answer = running.call("POST", "/predict", RECORD)
        assert status == 200 and answer["predictions"] == [ANSWER]


def checkout_for(user: str, folder: Path) -> Path:
    """A clone of this checkout with its uncommitted changes, owned by `user` (the same commit, so the same
    SOURCE_DATE_EPOCH and revision label as the suite's build)."""
    copy = folder / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(copy)], check=True)
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    for name in changed:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    deleted = subprocess.run(["git", "ls-files", "-d"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for name in deleted:
        (copy / name).unlink(missing_ok=True)
    subprocess.run(["chown", "-R", user, str(folder)], check=True)
    return copy


def as_user(user: str, command: list[str], environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in environment.items()),
                           *command], cwd=cwd, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def builder_user() -> str:
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--groups", "docker", USER],
                       check=True)
    return USER


def test_a_user_without_root_or_debian_tools_builds_and_runs_the_image(builder_user, request):
    """The first build on Docker 26 (overlay2): the bases are assembled by this user's build, from the lock, in
    Python and in containers. The suite's image is asked for once this build is done: with two test processes,
    this build runs while the other process builds it."""
    with started("overlay2") as engine:
        engine.client.containers.prune()  # a fresh engine, as in CI: nothing to reuse (this engine is the tests')
        engine.client.images.prune(filters={"dangling": False})
        assert not engine.client.images.list(all=True)
        folder = Path(tempfile.mkdtemp(prefix="sms-non-root-"))  # pytest's own folders are root's alone
        try:
            run_as_builder(engine, builder_user, folder, request)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def run_as_builder(engine: Engine, builder_user: str, folder: Path, request) -> None:
    copy = checkout_for(builder_user, folder)
    tools = folder / "bin"  # the user's PATH: git only (commit time and revision), no Debian tools
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git"))
    assert not any(shutil.which(name, path=str(tools)) for name in DEBIAN_TOOLS)
    home = {"HOME": str(folder), "PATH": str(tools), "LANG": "C.UTF-8"}
    venv = as_user(builder_user, ["/usr/bin/python3", "-m", "venv", str(folder / "venv")], home, copy)
    assert venv.returncode == 0, venv.stderr
    python = str(folder / "venv" / "bin" / "python")
    installed = as_user(builder_user, [python, "-m", "pip", "install", "-q", "-r", "requirements-build.txt"], home,
                        copy)
    assert installed.returncode == 0, installed.stderr[-3000:]
    result = as_user(builder_user, [python, "scripts/build.py", "--report", str(folder / "report.json")],
                     {**home, "DOCKER_HOST": engine.host}, copy)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "assembling the linux/amd64 builder base" in result.stderr
    assert "assembling the linux/amd64 runtime base" in result.stderr
    report = json.loads((folder / "report.json").read_text())
    default_image = request.getfixturevalue("default_image")
    assert report["id"] == default_image["id"], "another user, engine and checkout built another image"
    assert Path(report["records"]["sbom"]).read_text() == Path(default_image["records"]["sbom"]).read_text()
    builders = [_builder(Path(r["records"]["provenance"])) for r in (report, default_image)]
    assert builders[0] != builders[1], "the fresh engine's build named the suite's builder"
    predicts(engine, report["image"], request)


def _builder(provenance: Path) -> str:
    """The digest of the builder image a build's provenance names."""
    statement = json.loads(provenance.read_text())
    return next(d["digest"]["sha256"] for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
                if d.get("name") == "builder")


def test_the_default_build_gives_the_suites_image_id(engine, default_image, tmp_path_factory, request):
    report = build(engine, tmp_path_factory.mktemp("default"))
    assert report["id"] == default_image["id"], "Docker 26 built another image from the same commit"
    assert report["size"] == default_image["size"]
    if engine.store == "containerd":
        assert report["engine_id"] != report["id"]  # the containerd store names images by their manifest
    predicts(engine, report["image"], request)


def test_a_dataframe_model_builds_and_answers_as_model_predict(engine, trained, tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("byo")
    item = trained["forest"]
    model, sample = folder / "forest.joblib", folder / "forest-sample.csv"
    import joblib
    joblib.dump(item.model, model)
    item.sample.to_csv(sample, index=False)
    report = build(engine, folder, "--model", str(model), "--sample", str(sample), "--tag", tag("forest-26"),
                   "--size-budget", BUDGET_MB)
    with run_container(engine.client, report["image"], request) as running:
        status, _, answer = running.call("POST", "/predict", raw=item.rows.to_json(orient="records").encode(),
                                         headers={"Content-Type": "application/json"})
        assert status == 200 and answer["predictions"] == item.model.predict(item.rows).tolist()


@pytest.fixture(scope="module")
def suites_push(registry, docker_client, default_image) -> str:
    """The default image pushed from the suite's engine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REGISTRY_USERNAME", USER_OF_REGISTRY)
        patch.setenv("REGISTRY_PASSWORD", PASSWORD)
        return publish(docker_client, [(AMD64, default_image["image"])], f"{registry.host}/from-suite", ["a"]).reference


def test_push_gives_the_suites_digest(engine, registry, credentials, suites_push, default_image):
    """The same bytes from every engine and store: the suite's engine's push and this one's are one manifest."""
    suites = suites_push
    with docker_host(engine.host):
        pushed = publish(engine.client, [(AMD64, default_image["image"])], f"{registry.host}/from-26-{engine.store}",
                         ["a"]).reference
    assert pushed.split("@")[1] == suites.split("@")[1]
    print(f"\n{engine.store}: pushed {pushed}", file=sys.__stderr__)
