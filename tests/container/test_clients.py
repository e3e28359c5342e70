"""Clients nobody here wrote, used as shipped from PyPI (tritonclient[http] (gRPC: test_grpc_image.py), the kserve SDK with V1 and V2,
mlflow-skinny's scoring client, openapi-python-client) and Debian (Prometheus), against the image run as the README
says."""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from imagebuild.http_calls import call, free_port
from service.app import create_app
from service.state import EXTENSION

from ..conftest import BUNDLES
from ..venvs import run, venv

from .conftest import run_container

from .variants import default_and_pruned  # every test here: the default image and --prune's

pytestmark = pytest.mark.container
# mlflow-skinny's client looks for scipy.sparse with find_spec, which fails without scipy: users have it.
CLIENTS = ["tritonclient[grpc,http]==2.73.0", "kserve==0.21.0", "openapi-python-client==0.29.1", "mlflow-skinny==3.18.0",
           "scipy==1.17.1"]
ROWS = [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87], [48, 1, 21.6, 87, 183, 103.2, 70, 3, 3.8918, 69]]

TRITON = """
import json, sys
import numpy as np
import tritonclient.http as httpclient
url, model, columns = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = httpclient.InferenceServerClient(url=url)
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
inputs = []
for item in client.get_model_metadata(model)["inputs"]:
    values = columns[item["name"]]
    array = np.array(values, dtype=object) if item["datatype"] == "BYTES" else \\
        np.array([np.nan if v is None else v for v in values], dtype={"FP64": np.float64, "INT64": np.int64,
                                                                       "BOOL": np.bool_}[item["datatype"]])
    tensor = httpclient.InferInput(item["name"], [len(values)], item["datatype"])
    tensor.set_data_from_numpy(array)  # binary, the client's default
    inputs.append(tensor)
result = client.infer(model, inputs, request_compression_algorithm=sys.argv[4] or None)
answer = result.as_numpy("predict")
print(json.dumps([v.decode() if isinstance(v, bytes) else v for v in answer.tolist()]))
"""

KSERVE = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
url, model, rows = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]), dtype=np.float64)
async def main():
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    tensor = InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)  # binary, the SDK's default
    response = await client.infer(url, InferRequest(model, [tensor]), model_name=model)
    ready = await client.is_model_ready(url, model)
    await client.close()
    print(json.dumps({"ready": ready, "predict": response.outputs[0].as_numpy().tolist()}))
asyncio.run(main())
"""

KSERVE_V1 = """
import asyncio, json, sys
from kserve import InferenceRESTClient, RESTConfig
url, model, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
async def main():
    client = InferenceRESTClient(RESTConfig())  # V1: the SDK's default protocol
    live = await client.is_server_live(url)
    ready = await client.is_model_ready(url, model)
    response = await client.infer(url, {"instances": rows}, model_name=model)
    await client.close()
    print(json.dumps({"live": live, "ready": ready, "predictions": response["predictions"]}))
asyncio.run(main())
"""

MLFLOW = """
import json, sys
import pandas as pd
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
client = ScoringServerClient("127.0.0.1", int(sys.argv[1]))
client.wait_server_ready(timeout=30)
answer = client.invoke(pd.DataFrame(json.loads(sys.argv[3]), columns=json.loads(sys.argv[2])))
print(json.dumps(answer.get_predictions(predictions_format="ndarray").tolist()))
"""

GENERATED = """
import json, sys
sys.path.insert(0, sys.argv[2])
from client import Client
from client.api.default import post_v2_models_name_infer
from client.models import V2InferRequest
body = V2InferRequest.from_dict({"inputs": [{"name": "input-0", "shape": [2, 10], "datatype": "FP64",
                                             "data": json.loads(sys.argv[4])}]})
answer = post_v2_models_name_infer.sync(sys.argv[3], client=Client(base_url=sys.argv[1]), body=body)
print(json.dumps(answer.outputs[0].data))
"""


@pytest.fixture(scope="module")
def clients() -> Path:
    return venv("clients", CLIENTS)


@pytest.fixture(scope="module")
def local():
    return create_app({"MODEL_DIR": str(BUNDLES["diabetes"])}).extensions[EXTENSION].bundle


@pytest.mark.parametrize("compression", ["", "gzip"])
def test_tritonclient_infers_with_its_defaults(clients, served, local, compression):
    columns = {name: [row[i] for row in ROWS] for i, name in enumerate(local.feature_names)}
    output = run(clients, TRITON, f"127.0.0.1:{served.port}", local.card["name"], json.dumps(columns), compression)
    assert json.loads(output) == local.model.predict(np.array(ROWS, dtype=float)).tolist()


def test_tritonclient_sends_text_and_missing_values(clients, byo, trained, docker_client, request):
    item = trained["forest"]
    rows = item.rows[item.rows["city"].notna()].head(20)  # a BYTES tensor has no missing value; FP64 has NaN
    columns = json.loads(rows.to_json(orient="columns"))
    columns = {name: list(values.values()) for name, values in columns.items()}
    with run_container(docker_client, byo("forest")["image"], request) as running:
        name = running.call("GET", "/metadata")[2]["card"]["name"]
        output = run(clients, TRITON, f"127.0.0.1:{running.port}", name, json.dumps(columns), "")
    assert rows["area"].isna().any()
    assert json.loads(output) == item.model.predict(rows).tolist()


def test_kserve_sdk_v1_with_its_default_config(clients, served, local):
    output = json.loads(run(clients, KSERVE_V1, served.url, local.card["name"], json.dumps(ROWS)))
    assert output == {"live": True, "ready": True,
                      "predictions": local.model.predict(np.array(ROWS, dtype=float)).tolist()}


def test_mlflow_scoring_server_client(clients, served, local):
    """mlflow-skinny's ScoringServerClient: wait_server_ready (/ping), invoke a DataFrame (dataframe_split)."""
    output = run(clients, MLFLOW, str(served.port), json.dumps(local.feature_names), json.dumps(ROWS))
    assert json.loads(output) == local.model.predict(np.array(ROWS, dtype=float)).tolist()


def test_kserve_sdk_v2_infers_binary_tensors(clients, served, local):
    output = json.loads(run(clients, KSERVE, served.url, local.card["name"], json.dumps(ROWS)))
    assert output == {"ready": True, "predict": local.model.predict(np.array(ROWS, dtype=float)).tolist()}


def test_openapi_python_client_generates_every_operation(clients, served, local, tmp_path):
    (tmp_path / "openapi.json").write_bytes(call("GET", served.url + "/openapi.json")[2])
    result = subprocess.run([str(clients.parent / "openapi-python-client"), "generate", "--path", "openapi.json",
                             "--meta", "none", "--output-path", "client"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING parsing" not in result.stdout + result.stderr, result.stdout
    operations = {path.stem for path in (tmp_path / "client" / "api" / "default").glob("*.py")}
    assert {"post_predict", "post_v2_models_name_infer", "post_v2_models_name_versions_version_infer"} <= operations
    output = run(clients, GENERATED, served.url, str(tmp_path), local.card["name"],
                 json.dumps([v for row in ROWS for v in row]))
    assert json.loads(output) == local.model.predict(np.array(ROWS, dtype=float)).tolist()


def test_prometheus_scrapes_the_metrics(served):
    """promtool checks the text; a real Prometheus scrapes it and reports no error."""
    call("GET", served.url + "/")  # something to count
    _, headers, body = call("GET", served.url + "/metrics")
    parameters = [part.split("=")[0].strip() for part in headers["Content-Type"].split(";")[1:]]
    assert len(parameters) == len(set(parameters)), headers["Content-Type"]  # Go's mime parser refuses repeats
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "prometheus.yml"
        config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: service\n"
                          f"  static_configs: [{{targets: ['127.0.0.1:{served.port}']}}]\n")
        log = Path(folder) / "prometheus.log"
        with log.open("w") as output:
            process = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder}/data",
                                        f"--web.listen-address=127.0.0.1:{port}"], stdout=output, stderr=output)
        try:
            target = wait_for_scrape(port)
        finally:
            process.terminate()
            process.wait(timeout=30)
        assert target["health"] == "up" and target["lastError"] == "", target
        assert "content type" not in log.read_text().lower(), log.read_text()[-2000:]


def wait_for_scrape(port: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2) as response:
                targets = json.load(response)["data"]["activeTargets"]
            if targets and targets[0]["health"] != "unknown":
                time.sleep(2)  # a few more scrapes, so an error would be logged
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2) as response:
                    return json.load(response)["data"]["activeTargets"][0]
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail("Prometheus did not scrape the service")
