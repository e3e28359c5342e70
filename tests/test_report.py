"""The size report: layers measured once per digest, the history read from the image's own config."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from imagebuild import report


def _layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeImage:
    """What docker-py's Image offers the report: id, attrs and a legacy `docker save` stream (real archives of
    every layout: tests/test_archive.py)."""

    def __init__(self, image_id: str, layers: list[tuple[bytes, str]]):
        self.id, self.layers, self.saves = image_id, layers, 0
        self.attrs = {"Size": 1, "Config": {"Labels": {"a": "b"}}}

    def save(self, named: bool = False):
        self.saves += 1
        buffer = io.BytesIO()
        history = [{"created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": True}]
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            names = []
            for index, (_data, created_by) in enumerate(self.layers):
                names.append(f"{index:064x}/layer.tar")
                history.append({"created_by": created_by})
            # members in name order, as the engine writes them: not the layers' order
            diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for data, _ in self.layers]
            config = json.dumps({"history": history, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
            manifest = json.dumps([{"Config": "c" * 64 + ".json", "Layers": names}]).encode()
            members = sorted([(n, d) for n, (d, _) in zip(names, self.layers, strict=True)]
                             + [("c" * 64 + ".json", config)])
            for name, data in members + [("manifest.json", manifest)]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        data = buffer.getvalue()
        return iter([data[i:i + 1000] for i in range(0, len(data), 1000)])


class FakeClient:
    def __init__(self, image: FakeImage):
        self.images = type("Images", (), {"get": staticmethod(lambda reference: image)})()


@pytest.fixture
def measured(monkeypatch):
    calls: list[int] = []
    real = report._layer_stats

    def counting(data: bytes):
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(report, "_layer_stats", counting)
    return calls


def test_layers_are_measured_once_per_digest(tmp_path: Path, measured):
    venv = _layer({"opt/venv/lib/python3.13/site-packages/numpy/core.pyc": b"n" * 5000,
                   "opt/venv/lib/python3.13/site-packages/numpy-2.4.6.dist-info/METADATA": b"m" * 100})
    service = _layer({"app/service/app.py": b"print(1)\n"})
    cache = tmp_path / "layer-sizes.json"
    first = FakeImage("sha256:one", [(venv, "COPY dir:abc in /opt/venv"), (service, "COPY dir:def in /app")])
    result = report.analyze(FakeClient(first), "demo:1", cache)
    assert [row["created_by"] for row in result["layers"]] == ["COPY dir:abc in /opt/venv", "COPY dir:def in /app"]
    assert [row["digest"] for row in result["layers"]] == [
        "sha256:" + hashlib.sha256(data).hexdigest() for data in (venv, service)]
    assert result["packages"] == [{"name": "numpy", "size": 5100}]
    assert result["size"] == 5100 + len(b"print(1)\n")  # the files' bytes, not the tars' (nor the engine's figure)
    assert 0 < result["compressed_size"] and 0 < result["zstd_size"]
    assert len(measured) == 2

    report.analyze(FakeClient(first), "demo:1", cache)  # the same image: not even saved again
    assert first.saves == 1 and len(measured) == 2

    changed = _layer({"app/service/app.py": b"print(2)\n"})
    second = FakeImage("sha256:two", [(venv, "COPY dir:abc in /opt/venv"), (changed, "COPY dir:ghi in /app")])
    again = report.analyze(FakeClient(second), "demo:2", cache)
    assert measured[2:] == [len(changed)]  # only the layer that changed
    assert again["layers"][0]["compressed"] == result["layers"][0]["compressed"]


def test_a_broken_cache_is_measured_again(tmp_path: Path, measured):
    cache = tmp_path / "layer-sizes.json"
    cache.write_text("{not json")
    image = FakeImage("sha256:one", [(_layer({"x": b"1"}), "COPY x /x")])
    assert report.analyze(FakeClient(image), "demo:1", cache)["layers"][0]["created_by"] == "COPY x /x"
    assert json.loads(cache.read_text())["version"] == report.CACHE_VERSION


def test_render_shows_gzip_and_zstd(tmp_path: Path):
    image = FakeImage("sha256:one", [(_layer({"x": b"1" * 1000}), "COPY x /x")])
    text = report.render(report.analyze(FakeClient(image), "demo:1", tmp_path / "c.json"))
    assert "gzip," in text and "zstd" in text.splitlines()[3]


def test_layers_written_here_are_measured_without_saving_the_image(tmp_path: Path, measured):
    """imagebuild/reproducible.py hands the normalized layers over as files: analyze() then saves nothing."""
    layers = []
    for index, data in enumerate((_layer({"opt/venv/lib/python3.13/site-packages/numpy/a.pyc": b"n" * 300}),
                                  _layer({"app/x": b"1"}))):
        path = tmp_path / f"{index}.tar"
        path.write_bytes(data)
        layers.append(("sha256:" + hashlib.sha256(data).hexdigest(), path))
    config = {"rootfs": {"type": "layers", "diff_ids": [digest for digest, _ in layers]},
              "history": [{"created_by": "base"}, {"created_by": "/bin/sh -c #(nop)  USER 1", "empty_layer": True},
                          {"created_by": "/bin/sh -c #(nop) COPY dir in /app "}]}
    cache = tmp_path / "layer-sizes.json"
    report.remember("sha256:one", config, layers, cache)
    image = FakeImage("sha256:one", [(path.read_bytes(), "unused") for _, path in layers])
    result = report.analyze(FakeClient(image), "demo:1", cache)
    assert image.saves == 0 and len(measured) == 2
    assert [row["created_by"] for row in result["layers"]] == ["base", "COPY dir in /app"]
    assert result["packages"] == [{"name": "numpy", "size": 300}]
