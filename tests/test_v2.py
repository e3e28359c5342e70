"""Open Inference Protocol (V2) routes against both bundles: same predictions as /predict, protocol errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from service import __version__

from .test_api import direct, records_for


def model_path(service, suffix: str = "", versioned: bool = False) -> str:
    card = service.bundle.card
    version = f"/versions/{card['version']}" if versioned else ""
    return f"/v2/models/{card['name']}{version}{suffix}"


def per_feature(service, records) -> list[dict]:
    return [{"name": name, "shape": [len(records)], "datatype": "FP64", "data": [r[name] for r in records]}
            for name in service.bundle.feature_names]


def test_server_metadata_and_health(client, service):
    assert client.get("/v2").get_json() == {"name": "sklearn-model-service", "version": __version__,
                                            "extensions": ["binary_tensor_data"]}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    service.ready.clear()
    try:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get(model_path(service, "/ready")).status_code == 503
    finally:
        service.ready.set()


@pytest.mark.parametrize("versioned", [False, True])
def test_model_metadata_describes_the_live_model(client, service, versioned):
    body = client.get(model_path(service, versioned=versioned)).get_json()
    assert body["name"] == service.bundle.card["name"]
    assert body["versions"] == [service.bundle.card["version"]]
    assert body["platform"] == "sklearn"
    assert [i["name"] for i in body["inputs"]] == service.bundle.feature_names
    assert {i["datatype"] for i in body["inputs"]} == {"FP64"} and body["inputs"][0]["shape"] == [-1]
    assert body["outputs"][0]["name"] == "predict"
    assert client.get(model_path(service, "/ready", versioned)).status_code == 200


@pytest.mark.parametrize("versioned", [False, True])
def test_infer_per_feature_tensors_matches_predict(client, service, versioned):
    records = records_for(service, 3)
    response = client.post(model_path(service, "/infer", versioned),
                           json={"id": "abc-1", "inputs": per_feature(service, records)})
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["id"] == "abc-1" and body["model_name"] == service.bundle.card["name"]
    predict = body["outputs"][0]
    assert predict["name"] == "predict" and predict["shape"] == [3]
    assert predict["data"] == direct(service, records)
    if service.bundle.is_classifier:
        proba = body["outputs"][1]
        assert proba["name"] == "predict_proba" and proba["shape"] == [3, len(service.bundle.classes)]
        assert len(proba["data"]) == 3 * len(service.bundle.classes)


def test_infer_one_matrix_tensor_flat_or_nested(client, service):
    records = records_for(service, 2)
    features = service.bundle.feature_names
    rows = [[r[f] for f in features] for r in records]
    for data in (rows, [value for row in rows for value in row]):
        body = client.post(model_path(service, "/infer"), json={"inputs": [
            {"name": "input-0", "shape": [2, len(features)], "datatype": "FP64", "data": data}]}).get_json()
        assert body["outputs"][0]["data"] == direct(service, records)
        assert len(body["id"]) == 32  # none sent: the request id


@pytest.mark.parametrize("value", [0.25, 3, -0.0, 2**64 + 1, 5e-324, 1e308, 10**400, True, None, "1.5"],
                         ids=repr)
def test_a_matrix_tensor_answers_as_one_tensor_per_feature(client, service, value):
    """A matrix of numbers is read at once (inputs.plain_rows: a float64 array for an array model, with the types
    its values were read with as they were flattened), one tensor per feature value by value (/predict's checks):
    the answer, or the error, must be the same, whether the matrix is sent flat or a list per row."""
    records = records_for(service, 3)
    records[1] = {**records[1], service.bundle.feature_names[0]: value}
    features = service.bundle.feature_names
    rows = [[record[f] for f in features] for record in records]
    flat, nested = ([{"name": "input-0", "shape": [3, len(features)], "datatype": "FP64", "data": data}]
                    for data in ([value for row in rows for value in row], rows))
    answers = [client.post(model_path(service, "/infer"), json={"id": "x", "inputs": inputs})
               for inputs in (flat, nested, per_feature(service, records))]
    assert len({a.status_code for a in answers}) == 1, [a.get_json() for a in answers]
    assert answers[0].get_json() == answers[1].get_json() == answers[2].get_json()


def test_requested_outputs_are_filtered(client, service):
    records = records_for(service, 1)
    body = client.post(model_path(service, "/infer"), json={
        "inputs": per_feature(service, records), "outputs": [{"name": "predict"}]}).get_json()
    assert [o["name"] for o in body["outputs"]] == ["predict"]


def bad(service):
    good = per_feature(service, records_for(service, 2))
    first = service.bundle.feature_names[0]
    return [
        ("no inputs", {"inputs": []}, 422, "inputs"),
        ("not an object", [1], 422, "inputs"),
        ("bad shape", {"inputs": [{**good[0], "shape": "2"}] + good[1:]}, 422, "shape"),
        ("count mismatch", {"inputs": [{**good[0], "shape": [3]}] + good[1:]}, 422, "needs 3 values"),
        ("BYTES", {"inputs": [{**good[0], "datatype": "BYTES"}] + good[1:]}, 422, "send it as FP64, not BYTES"),
        ("unknown datatype", {"inputs": [{**good[0], "datatype": "FP128"}] + good[1:]}, 422, "unknown datatype"),
        # found by schemathesis: an object as datatype was a 500 (unhashable in the set lookup)
        ("object datatype", {"inputs": [{**good[0], "datatype": {"a": {}}}] + good[1:]}, 422, "unknown datatype"),
        ("list datatype", {"inputs": [{**good[0], "datatype": ["FP64"]}] + good[1:]}, 422, "unknown datatype"),
        ("missing feature", {"inputs": good[1:]}, 422, f"missing feature '{first}'"),
        ("unknown feature", {"inputs": good + [{**good[0], "name": "zzz"}]}, 422, "unknown feature 'zzz'"),
        ("twice", {"inputs": good + [good[0]]}, 422, "given twice"),
        ("null value", {"inputs": [{**good[0], "data": [None, 1]}] + good[1:]}, 422, "may not be null"),
        ("string value", {"inputs": [{**good[0], "data": ["a", 1]}] + good[1:]}, 422, "got a string"),
        ("ragged", {"inputs": [{**good[0], "shape": [1], "data": [1]}] + good[1:]}, 422, "same number of rows"),
        ("matrix columns", {"inputs": [{"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
         422, "columns"),
        ("unknown output", {"inputs": good, "outputs": [{"name": "nope"}]}, 422, "unknown output 'nope'"),
        ("object output name", {"inputs": good, "outputs": [{"name": {"a": 1}}]}, 422, "unknown output"),
        ("outputs not a list", {"inputs": good, "outputs": "predict"}, 422, "unknown output"),
    ]


def test_bad_infer_requests_get_a_v2_error(client, service):
    for name, body, status, message in bad(service):
        response = client.post(model_path(service, "/infer"), json=body)
        payload = response.get_json()
        assert response.status_code == status, (name, payload)
        assert set(payload) == {"error"} and message in payload["error"], (name, payload)


@pytest.mark.parametrize("path", ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/{name}/versions/9.9"])
def test_unknown_model_or_version_is_404(client, service, path):
    response = client.get(path.replace("{name}", service.bundle.card["name"]))
    assert response.status_code == 404 and set(response.get_json()) == {"error"}
    response = client.post("/v2/models/nope/infer", json={"inputs": []})
    assert response.status_code == 404 and "nope" in response.get_json()["error"]


def test_malformed_and_wrong_content_type_use_the_v2_shape(client, service):
    response = client.post(model_path(service, "/infer"), data="{", content_type="application/json")
    assert response.status_code == 400 and set(response.get_json()) == {"error"}
    response = client.post(model_path(service, "/infer"), data="{}", content_type="text/plain")
    assert response.status_code == 415 and set(response.get_json()) == {"error"}
    assert client.get("/v2/nothing").status_code == 404 and set(client.get("/v2/nothing").get_json()) == {"error"}


def binary_request(tensors: list[tuple[str, str, list]], parameters: dict | None = None) -> tuple[bytes, str]:
    """What tritonclient sends: a JSON header, then each input's raw little-endian bytes."""
    import struct
    inputs, blobs = [], []
    for name, datatype, values in tensors:
        if datatype == "BYTES":
            blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
        else:
            blob = np.asarray(values, dtype={"FP64": "<f8", "FP32": "<f4", "INT64": "<i8"}[datatype]).tobytes()
        inputs.append({"name": name, "shape": [len(values)], "datatype": datatype,
                       "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header = json.dumps({"inputs": inputs, **({"parameters": parameters} if parameters else {})}).encode()
    return header + b"".join(blobs), str(len(header))


def test_binary_tensors_in_and_out(client, service):
    records = records_for(service, 3)
    tensors = [(name, "FP64", [r[name] for r in records]) for name in service.bundle.feature_names]
    body, length = binary_request(tensors, {"binary_data_output": True})
    response = client.post(model_path(service, "/infer"), data=body,
                           headers={"Inference-Header-Content-Length": length})  # no Content-Type, as tritonclient
    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    header_length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.data[:header_length])
    first = header["outputs"][0]
    blob = response.data[header_length:header_length + first["parameters"]["binary_data_size"]]
    if first["datatype"] == "FP64":
        assert np.frombuffer(blob, "<f8").tolist() == direct(service, records)
    else:  # a classifier's labels: BYTES, a 4-byte length before each
        import struct
        labels, offset = [], 0
        while offset < len(blob):
            (size,) = struct.unpack_from("<I", blob, offset)
            labels.append(blob[offset + 4:offset + 4 + size].decode())
            offset += 4 + size
        assert labels == [str(label) for label in direct(service, records)]
    assert "data" not in first


def test_json_without_a_content_type_is_json_on_v2(client, service):
    body = {"inputs": per_feature(service, records_for(service, 2))}
    response = client.post(model_path(service, "/infer"), data=json.dumps(body))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json()["outputs"][0]["data"] == direct(service, records_for(service, 2))
    refused = client.post(model_path(service, "/infer"), data=json.dumps(body), content_type="text/plain")
    assert refused.status_code == 415


@pytest.mark.parametrize("change,message", [
    (lambda body, length: (body, str(len(body) + 1)), "must be the length of the JSON part"),
    (lambda body, length: (body + b"\0" * 8, length), "8 bytes of binary data are not claimed"),
    (lambda body, length: (body[:-8], length), "does not fit the"),
])
def test_malformed_binary_requests_are_client_errors(client, service, change, message):
    records = records_for(service, 1)
    body, length = binary_request([(name, "FP64", [records[0][name]]) for name in service.bundle.feature_names])
    body, length = change(body, length)
    response = client.post(model_path(service, "/infer"), data=body,
                           headers={"Inference-Header-Content-Length": length})
    assert 400 <= response.status_code < 500 and message in response.get_json()["error"]


def test_nan_in_a_binary_tensor_is_a_missing_value(client, service):
    records = records_for(service, 1)
    tensors = [(name, "FP64", [float("nan") if i == 0 else records[0][name]])
               for i, name in enumerate(service.bundle.feature_names)]
    body, length = binary_request(tensors)
    response = client.post(model_path(service, "/infer"), data=body,
                           headers={"Inference-Header-Content-Length": length})
    assert response.status_code == 422 and "may not be null" in response.get_json()["error"]
