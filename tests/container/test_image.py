"""The built image: the same answers as in process, under production restrictions, and its contract."""
from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from imagebuild.http_calls import call
from service import __version__
from service.app import create_app
from service.state import EXTENSION

from ..conftest import BUNDLES, ROOT
from .conftest import PRUNED_BUDGET
from ..test_build_tools import _build_script
from ..test_errors import BAD_BODIES

from .variants import default_and_pruned  # every test here: the default image and --prune's

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def local():
    """The in-process app with the container's settings, as the reference."""
    app = create_app({"MODEL_DIR": str(BUNDLES["diabetes"]), "MAX_ROWS": 50, "MAX_BODY_BYTES": 64 * 1024})
    return app


@pytest.mark.parametrize("path", ["/", "/health/live", "/health/ready", "/openapi.json"])
def test_get_endpoints_answer_as_in_process(served, local, path):
    status, _, body = served.call("GET", path)
    assert status == 200
    assert body == local.test_client().get(path).get_json()


def test_examples_and_their_predictions_match_in_process(served, local):
    _, _, body = served.call("GET", "/examples")
    expected = local.test_client().get("/examples").get_json()
    def strip(examples):
        return [{k: v for k, v in e.items() if k != "curl"} for e in examples]
    assert strip(body["examples"]) == strip(expected["examples"])
    for example in body["examples"]:
        assert example["curl"].startswith(f"curl -s -X POST {served.url}/predict ")
        status, _, answer = served.call("POST", "/predict", example["request"])
        assert status == 200 and answer == example["response"]


def test_metadata_matches_in_process(served, local):
    _, _, body = served.call("GET", "/metadata")
    expected = local.test_client().get("/metadata").get_json()
    assert body["card"] == expected["card"] and body["model"] == expected["model"]
    assert body["runtime"]["python"].startswith("3.13.")
    assert body["runtime"]["service_version"] == __version__


def test_grid_of_predictions_matches_in_process(served, local):
    features = local.extensions[EXTENSION].bundle.card["features"]
    records = [{f["name"]: f["min"] + i / 29 * (f["max"] - f["min"]) for f in features} for i in range(30)]
    _, _, body = served.call("POST", "/predict", records)
    assert body == local.test_client().post("/predict", json=records).get_json()


@pytest.mark.parametrize("name,body,status,code,field", BAD_BODIES, ids=[row[0] for row in BAD_BODIES])
def test_bad_input_answers_as_in_process(served, local, name, body, status, code, field):
    raw = body(local)
    raw = raw.encode() if isinstance(raw, str) else raw
    got_status, _, got = served.call("POST", "/predict", raw=raw, headers={"Content-Type": "application/json"})
    assert (got_status, got["error"]["code"]) == (status, code)


def test_http_errors_and_headers(served):
    assert served.call("GET", "/nope")[0] == 404
    status, headers, body = served.call("DELETE", "/predict")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    status, headers, body = served.call("POST", "/predict", raw=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415
    status, headers, body = served.call("POST", "/predict", raw=b"x" * 70_000,
                                        headers={"Content-Type": "application/json"})
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in headers


def test_image_contract(docker_client, image):
    config = docker_client.images.get(image["image"]).attrs["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/opt/venv/bin/python3", "-m", "service"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/venv/bin/python3", "-m", "service.healthcheck"]
    assert "8080/tcp" in config["ExposedPorts"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    for key in ("title", "description", "revision", "created", "source", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"] not in ("", "unknown"), key


def python_facts(served, probe: str) -> dict:
    """Run a Python probe with the image's own Python in the served container; the JSON it prints."""
    code, output = served.container.exec_run(["/opt/venv/bin/python3", "-c", probe])
    assert code == 0, output
    return json.loads(output)


def test_no_shell_no_package_manager_nonroot(served):
    probe = ("import os, shutil, json; dirs = os.environ['PATH'].split(':') + ['/bin', '/sbin'];"
             "names = ['sh', 'bash', 'dash', 'busybox', 'apt', 'apt-get', 'dpkg', 'mawk', 'perl'];"
             "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(),"
             " 'found': [n for n in names if shutil.which(n, path=':'.join(dirs))]}))")
    facts = python_facts(served, probe)
    assert facts == {"uid": 65532, "gid": 65532, "found": []}
    code, _ = served.container.exec_run(["/bin/sh", "-c", "true"])
    assert code != 0


def test_root_filesystem_is_read_only(served):
    code, output = served.container.exec_run(
        ["/opt/venv/bin/python3", "-c", "open('/app/x', 'w')"])
    assert code != 0 and b"Read-only file system" in output


def test_health_check_reports_healthy(fresh):
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        fresh.container.reload()
        health = fresh.container.attrs["State"].get("Health", {}).get("Status")
        if health == "healthy":
            return
        time.sleep(0.5)
    pytest.fail(f"health status stayed {health!r}")


def test_docker_stop_returns_within_3_seconds(fresh):
    start = time.monotonic()
    fresh.container.stop(timeout=10)
    elapsed = time.monotonic() - start
    fresh.container.reload()
    assert elapsed < 3.0, f"docker stop took {elapsed:.1f} s"
    assert fresh.container.attrs["State"]["ExitCode"] == 0


def test_sizes_are_consistent_and_the_service_is_the_thin_top_layer(image):
    """(The budget itself is the build's own gate: a build over it fails, tests/test_build_tools.py.)"""
    assert 0 < image["zstd_size"] < image["compressed_size"] < image["size"]
    assert image["layers"][-1]["size"] < 1_000_000, "service/ must be the thin top layer"
    if "pruned" in image:
        assert image["size"] <= PRUNED_BUDGET
        assert image["pruned"]["bytes"] > 10_000_000 and image["pruned"]["packages"]["scipy"] > 0


def test_v2_infer_and_metrics_answer_as_in_process(served, local):
    card = local.extensions[EXTENSION].bundle.card
    features = [f["name"] for f in card["features"]]
    body = {"id": "v2-1", "inputs": [{"name": "input-0", "shape": [1, len(features)], "datatype": "FP64",
                                      "data": [f["min"] for f in card["features"]]}]}
    path = f"/v2/models/{card['name']}/infer"
    status, _, answer = served.call("POST", path, body)
    assert status == 200 and answer == local.test_client().post(path, json=body).get_json()
    status, _, missing = served.call("GET", "/v2/models/nope")
    assert status == 404 and set(missing) == {"error"}
    text = call("GET", served.url + "/metrics")[2].decode()
    assert f'model_info{{name="{card["name"]}"' in text and 'endpoint="/v2/models/<name>/infer"' in text


def raw_exchange(port: int, head: bytes, body: bytes = b"", wait: float = 5.0) -> bytes:
    """Send `head` and `body` on a socket; everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(head)
        if body:
            with contextlib.suppress(OSError):
                connection.sendall(body)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and body == b"" and b"100 Continue" not in received:
                    break
    return received


def padded(records: list[dict], size: int) -> bytes:
    """A valid JSON body of exactly `size` bytes: the records, then whitespace."""
    text = json.dumps(records).encode()
    return text + b" " * (size - len(text))


def test_bodies_up_to_the_cap_are_answered_on_a_read_only_root(fresh, local):
    """waitress keeps bodies in memory up to the cap (a temporary file needs a writable root, which there is
    not); over the cap the JSON 413 comes before the body is read."""
    features = local.extensions[EXTENSION].bundle.card["features"]
    records = [{f["name"]: f["min"] for f in features}] * 500
    cap = 1_048_576
    for size in (600 * 1024, cap):
        status, _, answer = fresh.call("POST", "/predict", raw=padded(records, size),
                                       headers={"Content-Type": "application/json"})
        assert status == 200 and len(answer["predictions"]) == 500, size
    for size in (cap + 1, 3 * cap):
        reply = raw_exchange(fresh.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                         b"Content-Length: %d\r\n\r\n" % size, padded(records, size)[:65536])
        assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
        body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "body_too_large" and str(cap) in body["error"]["message"]


def test_expect_100_continue_over_the_cap_gets_413_at_once(fresh, local):
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n")
    refused = raw_exchange(fresh.port, head % (2 * 1_048_576))
    assert refused.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in refused, refused[:200]
    record = json.dumps({f["name"]: f["min"] for f in local.extensions[EXTENSION].bundle.card["features"]}).encode()
    with socket.create_connection(("127.0.0.1", fresh.port), timeout=5) as connection:
        connection.sendall(head % len(record))
        assert connection.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        connection.sendall(record)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_scanners_can_map_files_to_packages(served):
    """/var/lib/dpkg/status.d holds each package's control file and, as distroless writes them, the md5sums of
    the files it ships, which match the files in the image."""
    probe = ("import glob, hashlib, json, os\n"
             "found = {}\n"
             "for path in glob.glob('/var/lib/dpkg/status.d/*.md5sums'):\n"
             "    lines = open(path).read().splitlines()\n"
             "    wrong = [l for l in lines if hashlib.md5(open('/' + l.split('  ', 1)[1], 'rb').read()).hexdigest()"
             " != l.split('  ', 1)[0]]\n"
             "    found[os.path.basename(path)] = [len(lines), len(wrong)]\n"
             "print(json.dumps({'md5sums': found, 'control': sorted(os.listdir('/var/lib/dpkg/status.d'))}))")
    facts = python_facts(served, probe)
    assert {"libc6.md5sums", "libpython3.13-stdlib.md5sums", "libssl3t64.md5sums"} <= set(facts["md5sums"])
    assert all(count > 0 and wrong == 0 for count, wrong in facts["md5sums"].values()), facts["md5sums"]
    packages = {name for name in facts["control"] if not name.endswith(".md5sums")}
    assert {name.removesuffix(".md5sums") for name in facts["md5sums"]} <= packages


def test_a_shuffled_dataframe_gets_its_answers_on_its_own_rows(served, local):
    """DataFrame.to_json() (columns) and orient="split" of a shuffled frame: answers in the order sent, labelled."""
    import pandas as pd
    features = local.extensions[EXTENSION].bundle.card["features"]
    frame = pd.DataFrame([{f["name"]: f["min"] + i * (f["max"] - f["min"]) / 9 for f in features} for i in range(10)])
    frame = frame.sample(frac=1, random_state=3)
    expected = local.extensions[EXTENSION].bundle.model.predict(frame.to_numpy()).tolist()
    for orient in ("columns", "split"):
        status, _, answer = served.call("POST", "/predict", raw=frame.to_json(orient=orient).encode(),
                                        headers={"Content-Type": "application/json"})
        assert status == 200 and answer["predictions"] == expected, orient
        assert [int(label) for label in answer["index"]] == frame.index.tolist()


IMPORT_ALL = ("numpy", "scipy", "sklearn", "joblib")


def _import_all(docker_client, reference: str, **restrictions) -> dict:
    """build/import_all.py run with the image's own Python (build/ mounted read-only, no network)."""
    output = docker_client.containers.run(
        reference, ["/checks/import_all.py", *IMPORT_ALL], entrypoint=["/opt/venv/bin/python3"], remove=True,
        network_mode="none", volumes={str(ROOT / "build"): {"bind": "/checks", "mode": "ro"}}, stderr=False,
        environment={"PYTHONDONTWRITEBYTECODE": "1"}, **restrictions)
    return json.loads(output)


def _untrimmed(docker_client, builder: str) -> str:
    """The builder's step that installed the venv, before build/trim.py ran (kept by the engine's build cache)."""
    for entry in docker_client.images.get(builder).history():
        if "pip install" in entry["CreatedBy"] and entry["Id"] != "<missing>":
            return entry["Id"]
    pytest.fail(f"{builder} has no local step that installed the venv")


def test_every_submodule_imports_in_the_image_as_before_any_trim(docker_client, image):
    """The proof of every trim (sourceless bytecode, stripped extension modules, shared libgfortran, the standard
    library and system libraries the base leaves out): against the venv as pip installed it, on the full Debian
    Python, the same submodules import and the same ones fail."""
    from imagebuild.docker_build import builder_reference
    in_image = _import_all(docker_client, image["image"], read_only=True, cap_drop=["ALL"], user="65532:65532")
    in_builder = _import_all(docker_client, _untrimmed(docker_client, builder_reference(image["image"])))
    assert len(in_builder["imported"]) > 1000
    removed_on_purpose = tuple(path.split(".cpython-")[0].replace("/", ".")
                               for path in _build_script("trim").BUILD_AND_TEST_ONLY)
    def kept(names):
        return sorted(name for name in names if not name.startswith(removed_on_purpose))

    if "pruned" not in image:
        assert kept(in_builder["imported"]) == sorted(in_image["imported"])
        assert kept(in_builder["failed"]) == sorted(in_image["failed"])  # reasons may differ: tests/ are gone
        return
    # --prune: fewer modules, and every module left imports (the prune never leaves half a module behind)
    assert set(in_image["imported"]) < set(kept(in_builder["imported"]))
    assert {"sklearn", "numpy", "scipy.linalg", "joblib"} <= set(in_image["imported"])
    assert set(in_image["failed"]) <= set(in_builder["failed"])
