"""Building for amd64 and arm64 (issue 25): the platform table, the plan of a multi-platform build, the image
index, the lock's sections per architecture. The images themselves: tests/container/test_arm64.py."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imagebuild import cli, registry
from imagebuild.platforms import AMD64, ARM64, PLATFORMS, parse


@pytest.mark.parametrize("text, expected", [
    ("linux/amd64", [AMD64]),
    ("linux/arm64,linux/amd64", [ARM64, AMD64]),
    (" linux/arm64/v8 , linux/arm64 ", [ARM64]),
])
def test_platforms_are_parsed_in_order_once_each(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text, message", [
    ("linux/s390x", "platform 'linux/s390x': the image is built for linux/amd64 and linux/arm64"),
    ("arm64", "platform 'arm64'"),
    (" , ", "no platform given"),
])
def test_a_platform_the_build_cannot_make_is_one_line(text, message):
    with pytest.raises(ValueError, match=message) as raised:
        parse(text)
    assert "\n" not in str(raised.value)


def test_each_platform_has_its_own_wheel_tags_down_to_manylinux2014():
    for platform in PLATFORMS.values():
        tags = platform.wheel_tags()
        assert tags[0] == f"manylinux_2_28_{platform.machine}"
        assert f"manylinux_2_17_{platform.machine}" in tags and f"manylinux2014_{platform.machine}" in tags
        assert f"manylinux_2_41_{platform.machine}" in tags and f"manylinux_2_42_{platform.machine}" not in tags
        assert all(tag.endswith(platform.machine) for tag in tags)
    assert (ARM64.architecture, ARM64.variant, ARM64.triplet) == ("arm64", "v8", "aarch64-linux-gnu")


def test_the_engines_platform_is_built_first_and_keeps_the_tag(tmp_path):
    targets = cli.plan([ARM64, AMD64], AMD64, "registry.internal:5000/churn:2", tmp_path / "r.json")
    assert [(t.platform, t.reference) for t in targets] == [
        (AMD64, "registry.internal:5000/churn:2"), (ARM64, "registry.internal:5000/churn:2-arm64")]
    assert targets[0].records == cli.record_paths(tmp_path / "r.json", "registry.internal:5000/churn:2")
    assert targets[1].records == {"report": tmp_path / "r-arm64.json", "sbom": tmp_path / "r-arm64.cdx.json",
                                  "provenance": tmp_path / "r-arm64.provenance.json"}
    # one platform, whichever: the tag as given (on a Mac, the default is linux/arm64 and is the engine's own)
    assert [t.reference for t in cli.plan([ARM64], AMD64, "churn:2", None)] == ["churn:2"]
    assert [t.reference for t in cli.plan([AMD64, ARM64], ARM64, "churn:2", None)] == ["churn:2", "churn:2-amd64"]


def test_the_index_names_each_platforms_manifest_by_digest():
    documents = [(AMD64, b'{"amd64": 1}'), (ARM64, b'{"arm64": 22}')]
    index = json.loads(registry.index(documents))
    assert index["mediaType"] == registry.INDEX_TYPE and index["schemaVersion"] == 2
    assert [entry["platform"] for entry in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    for entry, (_, document) in zip(index["manifests"], documents, strict=True):
        assert entry["digest"] == "sha256:" + hashlib.sha256(document).hexdigest()
        assert entry["size"] == len(document) and entry["mediaType"] == registry.MANIFEST_TYPE
    assert registry.index(documents) == registry.index(list(documents))  # written the same way every time


@pytest.mark.parametrize("argv, message", [
    (["--platform", "linux/ppc64le"], "--platform: platform 'linux/ppc64le'"),
    (["--platform", "linux/amd64,linux/arm64", "--base", "x@sha256:" + "0" * 64], "--base names one platform's"),
])
def test_platform_arguments_that_cannot_work_are_one_line(argv, message):
    problem = cli.check_arguments(cli.parse(argv))
    assert problem is not None and problem.startswith(message) and "\n" not in problem


def test_every_architecture_locks_the_same_python_and_glibc():
    from imagebuild import debian_lock
    lock = debian_lock.read_lock()
    for name in ("libpython3.13-stdlib", "python3.13-minimal", "libc6", "libstdc++6", "libgomp1"):
        versions = {sections["runtime"]["packages"][name]["version"] for sections in lock.values()}
        assert len(versions) == 1, (name, versions)


def test_runtime_trim_rules_name_every_architectures_paths():
    from imagebuild import rootfs
    for triplet in (AMD64.triplet, ARM64.triplet):
        assert not rootfs._keep(f"usr/lib/{triplet}/gconv/UTF-16.so")
        assert not rootfs._keep(f"usr/lib/{triplet}/libmvec.so.1")
        assert rootfs._keep(f"usr/lib/{triplet}/libm.so.6")
        assert rootfs._trimmed(f"usr/lib/python3.13/_sysconfigdata__{triplet}.py")  # the non-multiarch copy
        assert not rootfs._trimmed(f"usr/lib/python3.13/_sysconfigdata__linux_{triplet}.py")  # what sysconfig reads
    rules = [line for line in Path(rootfs.RUNTIME_TRIM).read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in rules if "x86_64" in line or "aarch64" in line]


def test_another_platforms_standard_library_gets_its_own_sysconfigdata(tmp_path: Path):
    """The one standard-library module that differs between platforms: a cross build compiles the platform's."""
    from tests.test_build_tools import _trim_module
    stdlib = tmp_path / "usr/lib/python3.13"
    stdlib.mkdir(parents=True)
    (stdlib / "os.py").write_text("VALUE = 1\n")
    (stdlib / "_sysconfigdata__linux_x86_64-linux-gnu.py").write_text("build_time_vars = {'MULTIARCH': 'x86_64'}\n")
    theirs = tmp_path / "src" / "_sysconfigdata__linux_aarch64-linux-gnu.py"
    theirs.parent.mkdir()
    theirs.write_text("build_time_vars = {'MULTIARCH': 'aarch64'}\n")
    staging = tmp_path / "staging"
    _trim_module().stdlib_bytecode(stdlib, staging, (), theirs)
    written = {p.relative_to(staging / tmp_path.relative_to("/")).as_posix(): p for p in staging.rglob("*.pyc")}
    assert sorted(written) == ["usr/lib/python3.13/_sysconfigdata__linux_aarch64-linux-gnu.pyc",
                               "usr/lib/python3.13/os.pyc"]
    assert b"aarch64" in written["usr/lib/python3.13/_sysconfigdata__linux_aarch64-linux-gnu.pyc"].read_bytes()


def test_a_requirement_without_a_wheel_for_another_platform_is_one_line(tmp_path: Path):
    """Another platform than the engine's is assembled from wheels only: an sdist is refused by name."""
    from imagebuild import BuildError, wheels
    block = "docopt==0.6.2 \\\n    --hash=sha256:49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491"
    with pytest.raises(BuildError) as raised:
        wheels.fetch(block, tmp_path, ARM64, from_source=False)
    message = str(raised.value)
    assert message.startswith("docopt publishes no wheel for CPython 3.13 on glibc 2.41 aarch64")
    assert "\n" not in message
    assert "linux/arm64" in message and not list(tmp_path.iterdir())


def test_arm64_gets_its_documented_uncompressed_allowance_and_the_same_gzip_budget():
    from imagebuild import gate
    assert gate.budget(platform=ARM64) - gate.budget() == 18_000_000
    assert gate.budget(compressed=True, platform=ARM64) == gate.budget(compressed=True)
    assert gate.budget(grpc=True, platform=ARM64) - gate.budget(grpc=True) == 18_000_000
