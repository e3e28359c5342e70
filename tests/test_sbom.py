"""The SBOM, the provenance, the debug twin's context and where the records go, without an engine."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from imagebuild import BuildError, cli, debug_twin, provenance, sbom

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = {"libc6": {"version": "2.41-12", "sha256": "a" * 64, "file": "libc6_2.41-12_amd64.deb"},
          "tzdata": {"version": "2025b-4+deb13u1", "sha256": "b" * 64, "file": "tzdata_2025b-4+deb13u1_all.deb"}}


@pytest.fixture()
def locked(tmp_path) -> tuple[Path, Path]:
    """A requirements.txt pinning two files per requirement, and a wheelhouse holding one of each (and a build
    backend's wheel that no requirement names)."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    lines = []
    for name, version in (("Flask", "3.1.3"), ("scikit_learn", "1.9.1")):
        wheel = wheelhouse / f"{name}-{version}-py3-none-any.whl"
        wheel.write_bytes(f"{name} wheel".encode())
        lines += [f"{name}=={version} \\", f"    --hash=sha256:{'0' * 64} \\",
                  f"    --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}", "    # via -r x"]
    (wheelhouse / "setuptools-80.0.0-py3-none-any.whl").write_bytes(b"backend")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# compiled\n" + "\n".join(lines) + "\n")
    return requirements, wheelhouse


def test_python_distributions_are_the_installed_files_the_lock_pins(locked):
    distributions = sbom.python_distributions(*locked)
    assert [(d.name, d.version, d.file) for d in distributions] == [
        ("flask", "3.1.3", "Flask-3.1.3-py3-none-any.whl"),
        ("scikit-learn", "1.9.1", "scikit_learn-1.9.1-py3-none-any.whl")]
    assert distributions[0].sha256 == hashlib.sha256(b"Flask wheel").hexdigest()


def test_a_wheelhouse_that_does_not_match_the_lock_is_one_line(locked):
    requirements, wheelhouse = locked
    (wheelhouse / "Flask-3.1.3-py3-none-any.whl").write_bytes(b"tampered")
    with pytest.raises(BuildError, match=r"no file in the wheelhouse .* matches the hashes requirements.txt pins "
                                         r"for Flask==3.1.3: remove the folder and build again"):
        sbom.python_distributions(requirements, wheelhouse)


BASE = "sklearn-model-service-base/runtime:47d618cab142"


def test_the_sbom_validates_lists_everything_and_is_reproducible(locked, tmp_path):
    model = tmp_path / "model.joblib"
    model.write_bytes(b"model")
    distributions = sbom.python_distributions(*locked)
    text = sbom.document("churn:1.0", distributions, DEBIAN, model, 1795846743, BASE)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert text == sbom.document("churn:1.0", distributions, DEBIAN, model, 1795846743, BASE)
    assert sbom.packages(text) == {"pypi": {"flask": "3.1.3", "scikit-learn": "1.9.1"},
                                   "deb": {"libc6": "2.41-12", "tzdata": "2025b-4+deb13u1"}}
    document = json.loads(text)
    assert document["metadata"]["timestamp"] == "2026-11-28T06:19:03+00:00"
    assert document["metadata"]["component"] == {"bom-ref": "image", "name": "churn", "type": "container",
                                                 "version": "1.0",
                                                 "properties": [{"name": sbom.BASE_PROPERTY, "value": BASE}]}
    by_name = {component["name"]: component for component in document["components"]}
    assert by_name["tzdata"]["purl"] == "pkg:deb/debian/tzdata@2025b-4%2Bdeb13u1?arch=all&distro=debian-13"
    assert by_name["tzdata"]["hashes"] == [{"alg": "SHA-256", "content": "b" * 64}]
    assert by_name["flask"]["purl"] == "pkg:pypi/flask@3.1.3"
    assert by_name["model.joblib"]["type"] == "machine-learning-model"
    assert by_name["model.joblib"]["hashes"][0]["content"] == hashlib.sha256(b"model").hexdigest()
    assert sbom.document("churn:1.1", distributions, DEBIAN, model, 1795846743, BASE) != text
    assert sbom.document("churn:1.0", distributions, {}, model, 1795846743, "other@sha256:" + "0" * 64) != text


def test_provenance_records_inputs_and_outputs(tmp_path):
    model = tmp_path / "model.joblib"
    model.write_bytes(b"model")
    lock = ROOT / "build" / "debian.lock.json"
    statement = provenance.statement(
        parameters={"tag": "churn:1.0"}, source={"url": "https://example.org/x", "commit": "c" * 40, "dirty": True},
        locks=[ROOT / "requirements.txt", lock], model=model,
        images={"builder": ("churn-builder:1.0", "sha256:" + "1" * 64)},
        epoch={"seconds": 5, "source": "SOURCE_DATE_EPOCH"},
        image={"image": "churn:1.0", "id": "sha256:" + "2" * 64, "layers": ["sha256:" + "3" * 64]},
        sbom=b"{}", pushed="registry.internal:5000/churn@sha256:" + "4" * 64,
        debug={"image": "churn:1.0-debug", "id": "sha256:" + "5" * 64}, version="0.1.0", started=0, finished=60)
    assert [s["name"] for s in statement["subject"]] == ["churn:1.0", "registry.internal:5000/churn"]
    assert statement["subject"][1]["digest"] == {"sha256": "4" * 64}
    inputs = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert inputs[0] == {"uri": "git+https://example.org/x@" + "c" * 40, "digest": {"gitCommit": "c" * 40},
                         "annotations": {"dirty": True}}
    assert {"name": "build/debian.lock.json", "digest": {"sha256": hashlib.sha256(lock.read_bytes()).hexdigest()}} \
        in inputs
    assert {"name": "builder", "uri": "docker-image:churn-builder:1.0", "digest": {"sha256": "1" * 64}} in inputs
    assert statement["predicate"]["buildDefinition"]["internalParameters"] == {"SOURCE_DATE_EPOCH": 5,
                                                                               "epochSource": "SOURCE_DATE_EPOCH"}
    outputs = statement["predicate"]["runDetails"]["byproducts"]
    assert [item["name"] for item in outputs] == ["layer", "sbom", "debug-twin"]
    assert statement["predicate"]["runDetails"]["metadata"] == {"startedOn": "1970-01-01T00:00:00Z",
                                                                "finishedOn": "1970-01-01T00:01:00Z"}


def test_records_go_beside_the_report_or_into_dist(tmp_path):
    assert cli.record_paths(tmp_path / "out" / "r.json", "x:1") == {
        "report": tmp_path / "out" / "r.json", "sbom": tmp_path / "out" / "r.cdx.json",
        "provenance": tmp_path / "out" / "r.provenance.json"}
    assert cli.record_paths(None, "registry.internal:5000/ml/churn:2") == {
        "report": ROOT / "dist" / "registry.internal-5000-ml-churn-2.report.json",
        "sbom": ROOT / "dist" / "registry.internal-5000-ml-churn-2.cdx.json",
        "provenance": ROOT / "dist" / "registry.internal-5000-ml-churn-2.provenance.json"}


def test_debug_twin_tag_and_context(tmp_path):
    assert debug_twin.reference("sklearn-model-service:0.1.0") == "sklearn-model-service:0.1.0-debug"
    assert debug_twin.reference("localhost:5000/churn") == "localhost:5000/churn:latest-debug"
    fake = tmp_path / "busybox"
    fake.write_bytes(b"busybox")
    fake.chmod(0o755)
    with tarfile.open(fileobj=debug_twin.context(fake, ["cat", "ls", "sh"])) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert sorted(members) == ["build/Dockerfile.debug", "busybox/busybox", "busybox/cat", "busybox/ls", "busybox/sh"]
    assert members["busybox/sh"].issym() and members["busybox/sh"].linkname == "busybox"
    assert members["busybox/busybox"].mode == 0o755 and members["busybox/busybox"].mtime == 0


def test_debug_is_never_the_default():
    assert cli.parse([]).debug is False
    assert cli.parse(["--debug"]).debug is True
