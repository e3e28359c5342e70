"""The image built with `scripts/build.py --grpc` (issue 24): the Open Inference Protocol over gRPC, called by
`tritonclient.grpc` and the kserve SDK's InferenceGRPCClient as shipped, answering as model.predict, in every
worker, read-only with no capabilities; what gRPC costs the image, measured against the default image; and the
default image refusing SERVICE_GRPC_PORT in one line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import numpy as np
import pytest

from imagebuild import cli, gate
from imagebuild.http_calls import free_port, wait_until

from ..venvs import run
from .conftest import READY_TIMEOUT, log_entries, remove_build, run_container
from .test_clients import ROWS, clients, local  # the clients' venv and the default bundle

pytestmark = pytest.mark.container
MEASURED = Path(__file__).resolve().parents[2] / "reports" / "grpc.json"

TRITON_GRPC = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
url, model, rows, compression = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3])), sys.argv[4] or None
client = grpcclient.InferenceServerClient(url=url)
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
metadata = client.get_model_metadata(model, as_json=True)
inputs = []
for i, item in enumerate(metadata["inputs"]):
    tensor = grpcclient.InferInput(item["name"], [len(rows)], item["datatype"])
    tensor.set_data_from_numpy(rows[:, i].astype(np.float64))  # raw_input_contents, the client's way
    inputs.append(tensor)
result = client.infer(model, inputs, compression_algorithm=compression, headers={"x-request-id": "triton-1"})
print(json.dumps({"predict": result.as_numpy("predict").tolist(), "id": result.get_response().id,
                  "outputs": [o["name"] for o in metadata["outputs"]]}))
"""

KSERVE_GRPC = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest
url, model, rows = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]), dtype=np.float64)
async def main():
    client = InferenceGRPCClient(url)
    live, ready = await client.is_server_live(), await client.is_model_ready(model)
    tensor = InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    response = await client.infer(InferRequest(model_name=model, infer_inputs=[tensor]))
    await client.close()
    print(json.dumps({"live": live, "ready": ready, "predict": response.outputs[0].as_numpy().tolist()}))
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def grpc_image(tmp_path_factory, docker_client, default_image) -> Iterator[dict[str, Any]]:
    """The default bundle built with --grpc (tag <version>-grpc, the default budget plus grpc_bytes), compared
    with the default image's report as a pull request's build would be (issue 26); removed after."""
    folder = tmp_path_factory.mktemp("grpc")
    report_path, summary = folder / "report.json", folder / "summary.md"
    assert cli.main(["--grpc", "--report", str(report_path), "--compare", default_image["records"]["report"],
                     "--summary", str(summary), "--max-growth", "25"]) == 0, \
        "scripts/build.py --grpc failed: see its stderr"
    report = json.loads(report_path.read_text())
    yield {**report, "summary": summary.read_text()}
    remove_build(docker_client, report["image"])


def grpc_listeners(entries: list[dict[str, Any]]) -> set[int]:
    """The pids of the workers that have logged serving gRPC, from a container's log entries."""
    return {line["pid"] for line in entries if line["message"].startswith("gRPC on")}


@pytest.fixture(scope="module")
def grpc_served(request, docker_client, grpc_image) -> Iterator[Any]:
    """Two workers sharing the gRPC port, as on a 2-CPU node; both listening (the container is ready once the
    first is, and the second loads the model after it: on a busy machine, seconds later)."""
    port = free_port()
    with run_container(docker_client, grpc_image["image"], request,
                       {"SERVICE_GRPC_PORT": str(port), "SERVICE_WORKERS": "2"}) as running:
        running.grpc = f"127.0.0.1:{port}"
        both = wait_until(lambda: len(grpc_listeners(log_entries(running.container))) == 2, READY_TIMEOUT)
        assert both is not None, running.container.logs().decode()[-3000:]
        yield running


def test_grpc_costs_the_image_what_the_budget_allows(grpc_image, default_image, docker_client):
    environment = {image: docker_client.images.get(image).attrs["Config"]["Env"]
                   for image in (grpc_image["image"], default_image["image"])}
    assert "SERVICE_GRPC_PORT=8081" in environment[grpc_image["image"]]  # KServe's and MLServer's gRPC port
    assert "SERVICE_GRPC_PORT=0" in environment[default_image["image"]]
    extra = grpc_image["size"] - default_image["size"]
    packages = {row["name"]: row["size"] for row in grpc_image["packages"]}  # site-packages folders
    assert "grpc" in packages and "grpc" not in {row["name"] for row in default_image["packages"]}
    assert grpc_image["image"].endswith("-grpc") and grpc_image["budget"]["limit"] == gate.budget(grpc=True)
    assert 0 < extra <= gate.budget(grpc=True) - gate.budget()
    markdown = grpc_image["summary"]
    MEASURED.parent.mkdir(exist_ok=True)
    (MEASURED.parent / "grpc-size-diff.md").write_text(markdown)  # the summary's markdown, for the notes
    assert markdown.startswith(f"### Image size: {grpc_image['size'] / 1e6:.1f} MB (+{extra / 1e6:.1f} MB)\n")
    added = {name for name in ("grpc", "google", "grpcio", "protobuf") if f"| `{name}` | - |" in markdown}
    assert added == {"grpc", "google", "grpcio", "protobuf"}, markdown  # the packages and their dist-info
    assert "| `scikit-learn` |" not in markdown  # every package is in the report: nothing else changed size
    MEASURED.parent.mkdir(exist_ok=True)
    MEASURED.write_text(json.dumps({"default": default_image["size"], "grpc": grpc_image["size"], "extra": extra,
                                    "compressed_extra": grpc_image["compressed_size"]
                                    - default_image["compressed_size"],
                                    "packages": {name: packages.get(name) for name in ("grpc", "google")}},
                                   indent=2))


@pytest.mark.parametrize("compression", ["", "gzip"])
def test_tritonclient_grpc_infers_with_its_defaults(clients, grpc_served, local, compression):
    output = json.loads(run(clients, TRITON_GRPC, grpc_served.grpc, local.card["name"], json.dumps(ROWS),
                            compression))
    assert output["predict"] == local.model.predict(np.array(ROWS, dtype=float)).tolist()
    assert output["id"] == "triton-1" and output["outputs"] == ["predict"]


def test_kserve_sdk_grpc_client(clients, grpc_served, local):
    output = json.loads(run(clients, KSERVE_GRPC, grpc_served.grpc, local.card["name"], json.dumps(ROWS)))
    assert output == {"live": True, "ready": True,
                      "predict": local.model.predict(np.array(ROWS, dtype=float)).tolist()}


CONNECTIONS = """
import sys
import numpy as np
import tritonclient.grpc as grpcclient
url, model, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(count):  # a client of its own, on a connection of its own (no shared subchannel pool)
    client = grpcclient.InferenceServerClient(url=url, channel_args=[("grpc.use_local_subchannel_pool", 1)])
    metadata = client.get_model_metadata(model, as_json=True)
    inputs = [grpcclient.InferInput(item["name"], [1], "FP64") for item in metadata["inputs"]]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.array([0.5]))
    client.infer(model, inputs)
    client.close()
"""


def test_every_worker_answers_grpc(clients, grpc_served, local):
    """Both workers listen (SO_REUSEPORT); 24 calls on new connections reach both (all on one: 2 in 2**24), and
    REST still answers."""
    run(clients, CONNECTIONS, grpc_served.grpc, local.card["name"], "24")
    entries = log_entries(grpc_served.container)
    listening = grpc_listeners(entries)
    answering = {line["pid"] for line in entries if line.get("path", "").endswith("/ModelInfer")}
    assert len(listening) == 2 and answering == listening, (listening, answering)
    assert grpc_served.call("POST", "/predict", dict(zip(local.feature_names, ROWS[0], strict=True)))[0] == 200


def test_the_default_image_refuses_grpc_in_one_line(docker_client, default_image):
    container = docker_client.containers.run(default_image["image"], detach=True, network_mode="none",
                                             read_only=True, cap_drop=["ALL"],
                                             environment={"SERVICE_GRPC_PORT": "8081"})
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        logs = container.logs().decode().strip().splitlines()
    finally:
        container.remove(force=True)
    assert logs == ["error: SERVICE_GRPC_PORT=8081: this image has no gRPC (grpcio); build it with "
                    "scripts/build.py --grpc"]
