"""The push over the registry API, against a registry in this process: the blob the build measured is the blob the
push sends, and a layer the registry already has is neither compressed nor sent again. (Real registries, engines
and platforms: tests/container/test_publish.py, test_engines.py and test_arm64.py.)"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagebuild import archive, registry, report

from .test_report import FakeClient, FakeImage, _layer


class InProcessRegistry(http.server.ThreadingHTTPServer):
    """The blob and manifest routes of the distribution API a push uses (cross-repository mounts included, unless
    `mounts` is off: then a mount opens an upload, as a registry without them does), with no authentication."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.blobs: dict[str, bytes] = {}  # digest -> bytes
        self.linked: dict[str, set[str]] = {}  # repository -> the digests it has
        self.uploads: dict[str, tuple[str, bytes]] = {}  # upload id -> repository, bytes so far
        self.sent: list[str] = []  # digests of the blobs uploaded, in order
        self.mounted: list[str] = []
        self.cancelled = 0
        self.mounts = True


class _Handler(http.server.BaseHTTPRequestHandler):
    server: InProcessRegistry

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": "0", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> tuple[str, str, dict[str, list[str]]]:
        """(repository, what follows it, query) of /v2/<repository>/blobs/... or /v2/<repository>/manifests/..."""
        url = urllib.parse.urlparse(self.path)
        match = re.fullmatch(r"/v2/(.+?)/((?:blobs|manifests)/.*)", url.path)
        assert match, url.path
        return match.group(1), match.group(2), urllib.parse.parse_qs(url.query)

    def do_HEAD(self) -> None:
        repository, rest, _ = self._route()
        self._answer(200 if rest.rsplit("/", 1)[1] in self.server.linked.get(repository, set()) else 404)

    def do_POST(self) -> None:
        self._body()
        repository, _, query = self._route()
        if "mount" in query and self.server.mounts:
            digest, source = query["mount"][0], query["from"][0]
            if digest in self.server.linked.get(source, set()):
                self.server.linked.setdefault(repository, set()).add(digest)
                self.server.mounted.append(digest)
                self._answer(201, {"Location": f"/v2/{repository}/blobs/{digest}"})
                return
        upload = str(len(self.server.uploads) + self.server.cancelled)
        self.server.uploads[upload] = (repository, b"")
        self._answer(202, {"Location": f"/v2/{repository}/blobs/uploads/{upload}"})

    def do_PATCH(self) -> None:
        _, rest, _ = self._route()
        upload = rest.rsplit("/", 1)[1]
        repository, data = self.server.uploads[upload]
        self.server.uploads[upload] = (repository, data + self._body())
        self._answer(202, {"Location": f"/v2/{repository}/blobs/uploads/{upload}"})

    def do_DELETE(self) -> None:
        _, rest, _ = self._route()
        del self.server.uploads[rest.rsplit("/", 1)[1]]
        self.server.cancelled += 1
        self._answer(204)

    def do_PUT(self) -> None:
        repository, rest, query = self._route()
        body = self._body()
        if rest.startswith("manifests/"):
            self._answer(201, {"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()})
            return
        digest = query["digest"][0]
        owner, data = self.server.uploads.pop(rest.rsplit("/", 1)[1])
        data += body
        assert owner == repository and "sha256:" + hashlib.sha256(data).hexdigest() == digest
        self.server.blobs[digest] = data
        self.server.linked.setdefault(repository, set()).add(digest)
        self.server.sent.append(digest)
        self._answer(201)


@pytest.fixture
def served() -> Iterator[InProcessRegistry]:
    server = InProcessRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def push(served: InProcessRegistry, image: FakeImage, cache: Path, repository: str = "demo") -> dict:
    """registry.push's part for one image, with this test's cache."""
    session = registry.Session(f"127.0.0.1:{served.server_address[1]}", secure=False)
    document, diff_ids = registry._push_image(session, repository, FakeClient(image), "demo:1",
                                              report.measured_blobs(cache))
    report.remember_pushed(diff_ids, f"{session.host}/{repository}", cache)
    return json.loads(document)


def test_the_push_sends_the_blobs_the_build_measured_and_only_those_the_registry_lacks(served, tmp_path,
                                                                                       monkeypatch):
    base = _layer({"opt/venv/lib/python3.13/site-packages/numpy/core.pyc": bytes(range(256)) * 400})
    app, changed = _layer({"app/service/app.py": b"print(1)\n"}), _layer({"app/service/app.py": b"print(2)\n"})
    cache = tmp_path / "layer-sizes.json"
    first = FakeImage("sha256:one", [(base, "COPY /opt/venv"), (app, "COPY /app")])
    measured = report.analyze(FakeClient(first), "demo:1", cache)
    compressed: list[int] = []
    real = archive.gzipped
    monkeypatch.setattr(archive, "gzipped", lambda source, out: compressed.append(1) or real(source, out))

    layers = push(served, first, cache)["layers"]
    # what the push sent is what the build measured (the report's gzip sizes), and it is the layer, gzipped
    blobs = report.measured_blobs(cache)
    assert [(layer["digest"], layer["size"]) for layer in layers] == [
        (blobs[row["digest"]].digest, blobs[row["digest"]].size) for row in measured["layers"]]
    assert [layer["size"] for layer in layers] == [row["compressed"] for row in measured["layers"]]
    assert [gzip.decompress(served.blobs[layer["digest"]]) for layer in layers] == [base, app]
    assert served.sent[:2] == [layer["digest"] for layer in layers] and len(compressed) == 2

    compressed.clear()
    served.sent.clear()
    push(served, first, cache)  # the same image again: nothing compressed, nothing sent
    assert compressed == [] and served.sent == []

    second = FakeImage("sha256:two", [(base, "COPY /opt/venv"), (changed, "COPY /app")])
    report.analyze(FakeClient(second), "demo:2", cache)  # the build measures its new layer
    compressed.clear()
    document = push(served, second, cache)
    layers = document["layers"]
    assert len(compressed) == 1 and served.sent == [layers[1]["digest"], document["config"]["digest"]]
    assert gzip.decompress(served.blobs[layers[1]["digest"]]) == changed

    served.sent.clear()
    compressed.clear()
    document = push(served, second, cache, "another")  # another repository: mounted from "demo"
    assert compressed == [] and served.mounted == [layer["digest"] for layer in document["layers"]]
    assert served.sent == [document["config"]["digest"]]  # the config is sent as it is (it is small)

    served.mounts = False  # a registry without mounts: the upload it opens instead is cancelled, the blob sent
    served.sent.clear()
    document = push(served, first, cache, "third")
    assert served.sent == [*(layer["digest"] for layer in document["layers"]), document["config"]["digest"]]
    assert len(compressed) == 2
    assert served.cancelled == 3 and not served.uploads  # one per repository tried: demo and another, demo


def test_a_layer_the_build_did_not_measure_is_compressed_and_sent(served, tmp_path):
    base = _layer({"etc/os-release": b"fixture\n"})
    layers = push(served, FakeImage("sha256:three", [(base, "COPY /")]), tmp_path / "none.json")["layers"]
    assert gzip.decompress(served.blobs[layers[0]["digest"]]) == base
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", layers[0]["digest"])
