"""The built image: the same answers as in process, under production restrictions, and its contract."""
from __future__ import annotations

import json
import time

import pytest

from service import __version__
from service.app import create_app
from service.state import EXTENSION

from ..conftest import BUNDLES
from ..test_errors import BAD_BODIES
from .conftest import http

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
    strip = lambda examples: [{k: v for k, v in e.items() if k != "curl"} for e in examples]  # noqa: E731
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


def test_no_shell_no_package_manager_nonroot(served):
    probe = ("import os, shutil, json; dirs = os.environ['PATH'].split(':') + ['/bin', '/sbin'];"
             "names = ['sh', 'bash', 'dash', 'busybox', 'apt', 'apt-get', 'dpkg', 'mawk', 'perl'];"
             "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(),"
             " 'found': [n for n in names if shutil.which(n, path=':'.join(dirs))]}))")
    code, output = served.container.exec_run(["/opt/venv/bin/python3", "-c", probe])
    assert code == 0, output
    facts = json.loads(output)
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


def test_image_is_within_the_size_budget(image):
    assert image["size"] <= image["budget"]["limit"]
    assert 0 < image["compressed_size"] < image["size"]
    assert image["layers"][-1]["size"] < 1_000_000, "service/ must be the thin top layer"


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
    text = http("GET", served.url + "/metrics")[2].decode()
    assert f'model_info{{name="{card["name"]}"' in text and 'endpoint="/v2/models/<name>/infer"' in text
