"""imagebuild/reproducible.py without an engine: SOURCE_DATE_EPOCH, the config and layer rewrites."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from imagebuild import BuildError, archive
from imagebuild.reproducible import Epoch, normalize_layer, normalized_config, source_date_epoch

EPOCH = Epoch(1795846743, "commit")


def test_epoch_comes_from_the_environment_before_the_commit():
    assert source_date_epoch("1700000000", {"SOURCE_DATE_EPOCH": "1600000000"}) == Epoch(1600000000,
                                                                                         "SOURCE_DATE_EPOCH")
    assert source_date_epoch("1700000000", {}) == Epoch(1700000000, "commit")
    assert source_date_epoch("1700000000", {"SOURCE_DATE_EPOCH": " "}).source == "commit"
    assert source_date_epoch("", {}) == Epoch(0, "none")  # not a git checkout: still the same every time
    assert EPOCH.iso() == "2026-11-28T06:19:03Z"


@pytest.mark.parametrize("given, commit, message", [
    ("yesterday", "1700000000", "SOURCE_DATE_EPOCH='yesterday': give whole seconds since 1970-01-01 UTC"),
    ("-5", "1700000000", "give whole seconds"),
])
def test_a_bad_epoch_is_one_line_with_a_hint(given, commit, message):
    with pytest.raises(BuildError, match=message) as error:
        source_date_epoch(commit, {"SOURCE_DATE_EPOCH": given})
    assert "\n" not in str(error.value)


def built_config(created: str, container: str, parent: str, copy_hash: str) -> dict:
    """A config as the classic builder writes it, on a base of two steps."""
    return {
        "architecture": "amd64", "os": "linux", "created": created, "container": container,
        "container_config": {"Hostname": container[:12], "Image": parent}, "docker_version": "20.10.24",
        "config": {"User": "65532:65532", "Image": parent, "Labels": {"a": "b"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "debian trixie packages: base"},
                    {"created": "1970-01-01T00:00:00Z", "created_by": "debian trixie packages: python"},
                    {"created": created, "created_by": f"/bin/sh -c #(nop) COPY dir:{copy_hash} in /opt/venv "},
                    {"created": created, "created_by": "/bin/sh -c #(nop)  USER 65532:65532", "empty_layer": True}],
    }


def test_two_builds_configs_become_one():
    first = built_config("2026-11-28T06:49:05.462494653Z", "8f441add8132" * 5, "sha256:" + "a" * 64, "c" * 64)
    second = built_config("2026-11-29T10:00:00.1Z", "0123456789ab" * 5, "sha256:" + "b" * 64, "d" * 64)
    diff_ids = ["sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "4" * 64]
    one, other = (normalized_config(config, diff_ids, EPOCH, base_steps=2) for config in (first, second))
    assert one == other
    assert archive.image_id(one) == archive.image_id(other)
    assert one["created"] == "2026-11-28T06:19:03Z"
    assert not {"container", "container_config", "docker_version"} & set(one)
    assert one["config"] == {"User": "65532:65532", "Labels": {"a": "b"}}  # no parent, no empty fields
    assert one["rootfs"]["diff_ids"] == diff_ids
    assert [entry["created"] for entry in one["history"]] == ["1970-01-01T00:00:00Z"] * 2 + [EPOCH.iso()] * 2
    assert one["history"][2]["created_by"] == "/bin/sh -c #(nop) COPY dir in /opt/venv "
    assert one["history"][3]["empty_layer"] is True
    assert first["created"].startswith("2026-11-28T06:49"), "the config given was changed"


def layer(path: Path, mtime: int, uname: str) -> Path:
    """A layer tar as the engine writes one, with this build's times and owner names."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mtime, info.uname, info.gname = kind, len(data), mtime, uname, uname
            for key, value in fields.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if data else None)
        add("app", tarfile.DIRTYPE, mode=0o755)
        add("app/model.joblib", data=b"model bytes", mode=0o644)
        add("app/run", data=b"#!", mode=0o755, uid=65532, gid=65532)
        add("app/link", tarfile.SYMTYPE, linkname="model.joblib", mode=0o777)
        add("app/hard", tarfile.LNKTYPE, linkname="app/model.joblib", mode=0o644)
        add("app/.wh.gone", mode=0o644)
        add("app/caps", data=b"x", mode=0o755, pax_headers={"SCHILY.xattr.security.capability": "v",
                                                              "mtime": f"{mtime}.123456"})
    return path


def test_layers_of_two_builds_become_one(tmp_path):
    first = layer(tmp_path / "first.tar", 1795850000, "root")
    second = layer(tmp_path / "second.tar", 1795990000, "")
    digests = []
    for name, source in (("a", first), ("b", second)):
        with tarfile.open(source) as tar:
            digests.append(normalize_layer(tar, tmp_path / f"{name}.out.tar"))
    assert digests[0] == digests[1]
    out = tmp_path / "a.out.tar"
    assert digests[0] == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    with tarfile.open(out) as tar, tarfile.open(first) as original:
        for member, before in zip(tar.getmembers(), original.getmembers(), strict=True):
            assert (member.name, member.type, member.mode, member.uid, member.gid, member.linkname, member.size) \
                == (before.name, before.type, before.mode, before.uid, before.gid, before.linkname, before.size)
            assert member.mtime == 0 and member.uname == member.gname == ""
            if member.isfile():
                assert tar.extractfile(member).read() == original.extractfile(before).read()
        assert tar.getmember("app/caps").pax_headers == {"SCHILY.xattr.security.capability": "v"}
