"""`docker save` archives read by what they declare, from real engines (tests/fixtures/docker-save, made by its
make.py): Docker 20.10's legacy layout, and Docker 26's OCI layout with the overlay2 and the containerd image
store; and the same image normalized from each to one config and one set of layers."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from imagebuild import archive
from imagebuild.reproducible import Epoch, normalize_layer, normalized_config

FIXTURES = Path(__file__).parent / "fixtures" / "docker-save"
ENGINES = ["docker-20.10-overlay2", "docker-26-overlay2", "docker-26-containerd"]
EPOCH = Epoch(1795846743, "commit")


def read(path: Path, workdir: Path) -> archive.Saved:
    with tarfile.open(path) as stream:
        return archive.read_saved(stream, workdir)


def files_of(layer: Path) -> dict[str, bytes]:
    with tarfile.open(layer) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engines_archive_gives_the_config_and_the_layers(engine, tmp_path):
    saved = read(FIXTURES / f"{engine}.tar", tmp_path)
    assert [files_of(path) for _, path in saved.layers] == [{"etc/base-release": b"fixture base\n"},
                                                            {"app/hello.txt": b"hello, layer\n"}]
    assert [diff_id for diff_id, _ in saved.layers] == saved.config["rootfs"]["diff_ids"]
    for diff_id, path in saved.layers:
        assert diff_id == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    with tarfile.open(FIXTURES / f"{engine}.tar") as whole:
        manifest = json.load(whole.extractfile("manifest.json"))
        config = whole.extractfile(manifest[0]["Config"]).read()
    assert saved.config_digest == "sha256:" + hashlib.sha256(config).hexdigest()
    assert saved.config["config"]["User"] == "65532:65532"


def test_one_image_from_every_engine_normalizes_to_one(tmp_path):
    """The same Dockerfile on 20.10 and 26 (both stores): its layers and config rewritten alike give one id, though
    the engines render HEALTHCHECK differently and the containerd store leaves empty fields out."""
    configs, layer_ids = [], []
    for number, engine in enumerate(ENGINES):
        (tmp_path / engine).mkdir()
        saved = read(FIXTURES / f"{engine}.tar", tmp_path / engine)
        base_id, base = saved.layers[0]
        with tarfile.open(saved.layers[1][1]) as own:
            copied = normalize_layer(own, tmp_path / f"copied-{number}.tar")
        layer_ids.append([base_id, copied])
        configs.append(normalized_config(saved.config, [base_id, copied], EPOCH, base_steps=1))
    assert layer_ids[0] == layer_ids[1] == layer_ids[2]
    healthchecks = {entry["created_by"] for config in configs for entry in config["history"]
                    if "HEALTHCHECK" in entry.get("created_by", "")}
    assert len(healthchecks) == 1, healthchecks
    # the base was imported on each engine at its own time (a real build loads one archive everywhere): its
    # history entry, kept as it is, is the only difference left
    assert len({archive.image_id({**config, "history": config["history"][1:]}) for config in configs}) == 1


def test_an_archive_with_only_an_index_and_compressed_layers(tmp_path):
    """An OCI layout need not carry Docker's manifest.json: read through index.json alone. The containerd store
    saved this image's layers gzipped, as a registry stores them: their diff_ids are of the uncompressed tars."""
    with tarfile.open(FIXTURES / "docker-26-containerd.tar") as whole:
        members = {m.name: whole.extractfile(m).read() for m in whole if m.isfile() and m.name != "manifest.json"}
    manifest = json.loads(members["blobs/sha256/" + json.loads(members["index.json"])["manifests"][0]["digest"][7:]])
    assert all(layer["mediaType"].endswith(("tar+gzip", "tar.gzip")) for layer in manifest["layers"])
    rebuilt = tmp_path / "index-only.tar"
    with tarfile.open(rebuilt, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "work").mkdir()
    saved = read(rebuilt, tmp_path / "work")
    assert [diff_id for diff_id, _ in saved.layers] == saved.config["rootfs"]["diff_ids"]
    assert files_of(saved.layers[1][1]) == {"app/hello.txt": b"hello, layer\n"}


def test_an_archive_that_lacks_what_it_declares_is_one_clear_error(tmp_path):
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        data = json.dumps([{"Config": "blobs/sha256/" + "0" * 64, "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(archive.ArchiveError, match="declares blobs/sha256/0+ but holds no such file"):
        read(broken, tmp_path)
