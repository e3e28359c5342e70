"""The image started each platform's way, passing each contract (docs/deploy.md): SageMaker's `serve` with its
port variable, 6 MB CSV bodies and every answer type; Vertex AI's AIP_* variables with its default routes; KServe V1
and MLflow's routes on a plain run; a million rows scored offline with `predict`. Answers are compared with
model.predict in process."""
from __future__ import annotations

import csv
import io
import json
import subprocess
from typing import Any

import numpy as np
import pytest

from imagebuild.http_calls import call
from service.app import create_app
from service.state import EXTENSION

from ..conftest import BUNDLES
from .conftest import run_container

pytestmark = pytest.mark.container
ROWS = [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87], [48, 1, 21.6, 87, 183, 103.2, 70, 3, 3.8918, 69]]


@pytest.fixture(scope="module")
def local() -> Any:
    return create_app({"MODEL_DIR": str(BUNDLES["diabetes"])}).extensions[EXTENSION].bundle


def many_rows(count: int) -> np.ndarray:
    """`count` rows spread over the training ranges (the same every run)."""
    rng = np.random.default_rng(24)
    low, high = np.array([19, 1, 18, 62, 97, 41.6, 22, 2, 3.2581, 58]), np.array([79, 2, 42.2, 133, 301, 242.4,
                                                                                  99, 9.09, 6.107, 124])
    return np.round(low + rng.uniform(size=(count, 10)) * (high - low), 4)


def as_csv(rows: Any, header: list[str] | None = None) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(([header] if header else []) + [[repr(float(v)) for v in row] for row in rows])
    return buffer.getvalue().encode()


@pytest.fixture(scope="module")
def sagemaker(request, docker_client, image):
    """`docker run IMAGE serve`, as SageMaker starts it, on the port SAGEMAKER_BIND_TO_PORT names."""
    with run_container(docker_client, image["image"], request, port_variable="SAGEMAKER_BIND_TO_PORT",
                       command=["serve"]) as running:
        yield running


def test_sagemaker_serve_answers_ping_and_execution_parameters(sagemaker):
    assert call("GET", f"{sagemaker.url}/ping", None, {})[0] == 200
    status, _, body = call("GET", f"{sagemaker.url}/execution-parameters", None, {})
    assert status == 200 and json.loads(body)["MaxPayloadInMB"] == 6
    logs = sagemaker.container.logs().decode()
    assert "Traceback" not in logs and "unrecognized arguments" not in logs


def test_sagemaker_scores_a_5_mb_csv_exactly_in_every_answer_type(sagemaker, local):
    """About 5 MB of headerless CSV (SageMaker batch transform's mini-batch), over 1 MiB and 1,000 rows."""
    rows = many_rows(60_000)
    body = as_csv(rows)
    assert 4_000_000 < len(body) < 6 << 20
    expected = local.model.predict(rows).tolist()
    status, headers, payload = call("POST", f"{sagemaker.url}/invocations", body,
                                    {"Content-Type": "text/csv", "Accept": "text/csv"})
    assert status == 200, payload[:300]
    assert [float(line) for line in payload.decode().splitlines()] == expected
    small = as_csv(rows[:50], local.feature_names)
    for accept, decode in (("application/json", lambda text: json.loads(text)["predictions"]),
                           ("application/jsonlines", lambda text: [json.loads(line) for line in text.splitlines()])):
        status, _, payload = call("POST", f"{sagemaker.url}/invocations", small,
                                  {"Content-Type": "text/csv", "Accept": accept})
        assert status == 200 and decode(payload.decode()) == expected[:50]
    status, _, payload = call("POST", f"{sagemaker.url}/invocations", small,
                              {"Content-Type": "text/csv", "Accept": "application/xml"})
    assert status == 406


def test_vertex_ai_variables_and_default_routes(request, docker_client, image, local):
    """Vertex AI's defaults for a custom container: its port, and routes named after the endpoint and model."""
    route = "/v1/endpoints/7/deployedModels/8"
    with run_container(docker_client, image["image"], request, {"AIP_HEALTH_ROUTE": route,
                       "AIP_PREDICT_ROUTE": f"{route}:predict", "AIP_MODE": "PREDICTION"},
                       port_variable="AIP_HTTP_PORT") as running:
        assert call("GET", running.url + route, None, {})[0] == 200
        rows = many_rows(12_000)  # about 1.4 MB of JSON: over our 1 MiB default, under Vertex's 1.5 MB
        body = json.dumps({"instances": rows.tolist(), "parameters": {}}).encode()
        assert 1 << 20 < len(body) < 1_500_000
        status, _, payload = call("POST", f"{running.url}{route}:predict", body,
                                  {"Content-Type": "application/json"})
        assert status == 200 and json.loads(payload) == {"predictions": local.model.predict(rows).tolist()}


def test_kserve_v1_and_mlflow_routes_on_a_plain_run(served, local):
    name = local.card["name"]
    assert served.call("GET", "/")[2]["status"] == "alive"
    assert served.call("GET", f"/v1/models/{name}")[2] == {"name": name, "ready": True}
    status, _, answer = served.call("POST", f"/v1/models/{name}:predict", {"instances": ROWS})
    assert status == 200 and answer == {"predictions": local.model.predict(np.array(ROWS, float)).tolist()}
    split = {"dataframe_split": {"columns": local.feature_names, "data": ROWS}}
    status, _, answer = served.call("POST", "/invocations", split)
    assert status == 200 and answer == {"predictions": local.model.predict(np.array(ROWS, float)).tolist()}
    assert served.call("GET", "/health")[0] == served.call("GET", "/ping")[0] == 200


def test_a_million_row_csv_is_scored_offline_exactly_in_flat_memory(image, local, tmp_path):
    """`docker run -i IMAGE predict < rows.csv > predictions.csv` under a 256 MB limit: a file held in memory
    would need about 1 GB of Python objects (measured in process: 176 MB peak for 2,000 rows, 201 MB for 10^6)."""
    rows = many_rows(1_000_000)
    source, target = tmp_path / "rows.csv", tmp_path / "predictions.csv"
    source.write_bytes(as_csv(rows))
    with source.open("rb") as stdin, target.open("wb") as stdout:
        result = subprocess.run(["docker", "run", "-i", "--rm", "--read-only", "--cap-drop", "ALL", "--network",
                                 "none", "--memory", "256m", "--memory-swap", "256m", image["image"], "predict"],
                                stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=False, timeout=600)
    log = result.stderr.decode()
    assert result.returncode == 0, log[-2000:]
    assert "predict: 1000000 rows in" in log
    with target.open() as answers:
        assert [float(line) for line in answers] == local.model.predict(rows).tolist()
