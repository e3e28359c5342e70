"""The Open Inference Protocol over gRPC (service/grpc_v2), in process through a real channel, against both bundles:
the six calls, the same answers as /v2 and /predict, typed or raw contents, errors as gRPC statuses, the limits,
and calls counted like REST requests. tritonclient and the kserve SDK call the image in
tests/container/test_grpc_image.py."""
from __future__ import annotations

import math
import socket

import grpc  # the dev venv installs service/grpc_v2/requirements.in
import numpy as np
import pytest

from imagebuild.http_calls import free_port
from service import __version__
from service.grpc_v2.protocol import MESSAGE
from service.grpc_v2.server import start
from service.state import EXTENSION

from .byo_models import KINDS
from .test_api import direct, records_for
from .test_derive import apps, bundles  # the models users bring, derived as the build does

CALL = "/inference.GRPCInferenceService/{}"


@pytest.fixture(scope="module")
def channel(app):
    """The app's gRPC server on a free port, and a channel to it."""
    port = free_port()
    server = start(app, "127.0.0.1", port)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    server.stop(0)


def call(channel, name: str, request, metadata=()):
    method = channel.unary_unary(CALL.format(name), request_serializer=type(request).SerializeToString,
                                 response_deserializer=MESSAGE[f"{name}Response"].FromString)
    return method.with_call(request, metadata=metadata, timeout=30)


def infer(channel, service, tensors: list[dict], raw: list[bytes] = (), **fields):
    request = MESSAGE["ModelInferRequest"](model_name=service.bundle.card["name"], inputs=tensors,
                                           raw_input_contents=list(raw), **fields)
    return call(channel, "ModelInfer", request)


def refused(channel, service, tensors, raw=(), **fields) -> tuple[object, str]:
    with pytest.raises(grpc.RpcError) as caught:
        infer(channel, service, tensors, raw, **fields)
    return caught.value.code(), caught.value.details()


def test_health_and_metadata(channel, service):
    assert call(channel, "ServerLive", MESSAGE["ServerLiveRequest"]())[0].live
    assert call(channel, "ServerReady", MESSAGE["ServerReadyRequest"]())[0].ready
    name = service.bundle.card["name"]
    assert call(channel, "ModelReady", MESSAGE["ModelReadyRequest"](name=name))[0].ready
    server = call(channel, "ServerMetadata", MESSAGE["ServerMetadataRequest"]())[0]
    assert (server.name, server.version) == ("sklearn-model-service", __version__)
    metadata = call(channel, "ModelMetadata", MESSAGE["ModelMetadataRequest"](name=name))[0]
    assert metadata.name == name and list(metadata.versions) == [service.bundle.card["version"]]
    assert [tensor.name for tensor in metadata.inputs] == service.bundle.feature_names
    assert metadata.outputs[0].name == "predict"
    service.ready.clear()
    try:
        assert not call(channel, "ServerReady", MESSAGE["ServerReadyRequest"]())[0].ready
        assert not call(channel, "ModelReady", MESSAGE["ModelReadyRequest"](name=name))[0].ready
    finally:
        service.ready.set()


def values_of(output, blob: bytes) -> list:
    """An output's values from its raw bytes (BYTES: each a 4-byte little-endian length, then the bytes)."""
    if output.datatype != "BYTES":
        return np.frombuffer(blob, dtype={"FP64": "<f8", "INT64": "<i8", "BOOL": "?"}[output.datatype]).tolist()
    values, offset = [], 0
    while offset < len(blob):
        length = int.from_bytes(blob[offset:offset + 4], "little")
        values.append(blob[offset + 4:offset + 4 + length].decode())
        offset += 4 + length
    return values


def test_raw_and_typed_contents_answer_as_predict_and_v2(channel, client, service):
    records = records_for(service, 4)
    columns = {name: [r[name] for r in records] for name in service.bundle.feature_names}
    typed = [{"name": name, "datatype": "FP64", "shape": [4], "contents": {"fp64_contents": values}}
             for name, values in columns.items()]
    raw = [{"name": name, "datatype": "FP64", "shape": [4]} for name in columns]
    matrix = np.array([[r[name] for name in columns] for r in records], dtype=np.float64)
    rest = client.post(f"/v2/models/{service.bundle.card['name']}/infer", json={"inputs": [
        {"name": name, "datatype": "FP64", "shape": [4], "data": values} for name, values in columns.items()]})
    expected = {o["name"]: (o["datatype"], o["shape"], o["data"]) for o in rest.get_json()["outputs"]}
    assert expected["predict"][2] == direct(service, records) or service.bundle.is_classifier
    answers = [infer(channel, service, typed, id="mine")[0],
               infer(channel, service, raw, [np.array(v, dtype="<f8").tobytes() for v in columns.values()])[0],
               # one [N, F] tensor, as tritonclient sends a NumPy matrix
               infer(channel, service, [{"name": "input-0", "datatype": "FP64", "shape": list(matrix.shape)}],
                     [matrix.tobytes()])[0]]
    for answer in answers:
        assert answer.model_name == service.bundle.card["name"]
        assert len(answer.raw_output_contents) == len(answer.outputs) == len(expected)
        for output, blob in zip(answer.outputs, answer.raw_output_contents, strict=True):
            datatype, shape, data = expected[output.name]
            assert (output.datatype, list(output.shape)) == (datatype, shape)
            assert not output.HasField("contents")
            assert values_of(output, blob) == ([str(v) for v in data] if datatype == "BYTES" else data)
    assert answers[0].id == "mine"


def test_errors_are_grpc_statuses_with_the_rest_message(channel, service):
    name = service.bundle.feature_names[0]
    good = [{"name": f, "datatype": "FP64", "shape": [2], "contents": {"fp64_contents": [1.0, 2.0]}}
            for f in service.bundle.feature_names]
    cases = [
        (good[1:], (), {}, grpc.StatusCode.INVALID_ARGUMENT, f"missing feature '{name}'"),
        ([{**good[0], "shape": [3]}] + good[1:], (), {}, grpc.StatusCode.INVALID_ARGUMENT, "needs 3 values"),
        ([{**good[0], "datatype": "BYTES", "contents": {"bytes_contents": [b"a", b"b"]}}] + good[1:], (), {},
         grpc.StatusCode.INVALID_ARGUMENT, "send it as FP64, not BYTES"),
        ([{**good[0], "datatype": "FP16", "contents": {}}] + good[1:], (), {}, grpc.StatusCode.INVALID_ARGUMENT,
         "has no typed contents"),
        ([{"name": f, "datatype": "FP64", "shape": [2]} for f in service.bundle.feature_names], [b"\0" * 16], {},
         grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents holds 1 tensors"),
        ([{"name": f, "datatype": "FP64", "shape": [2]} for f in service.bundle.feature_names],
         [b"\0" * 15] * len(good), {}, grpc.StatusCode.INVALID_ARGUMENT, "not a whole number of FP64 values"),
        ([{**good[0], "contents": {"fp64_contents": [math.nan, 1.0]}}] + good[1:], (), {},
         grpc.StatusCode.INVALID_ARGUMENT, "may not be null"),
        (good, (), {"outputs": [{"name": "nope"}]}, grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'nope'"),
        (good, (), {"model_version": "9.9"}, grpc.StatusCode.NOT_FOUND, "unknown version '9.9'"),
    ]
    for tensors, raw, fields, code, message in cases:
        status, details = refused(channel, service, tensors, raw, **fields)
        assert status == code and message in details, (message, status, details)
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, "ModelMetadata", MESSAGE["ModelMetadataRequest"](name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "unknown model 'nope'" in caught.value.details()


def test_limits_are_the_rest_limits(channel, app, service):
    """MAX_ROWS rows, the value budget before decoding, SERVICE_MAX_BODY_BYTES per message."""
    features = service.bundle.feature_names
    rows = app.config["MAX_ROWS"] + 1
    tensors = [{"name": f, "datatype": "FP64", "shape": [rows], "contents": {"fp64_contents": [1.0] * rows}}
               for f in features]
    status, details = refused(channel, service, tensors)
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED and "the limit is 50" in details, details
    huge = [{"name": features[0], "datatype": "FP64", "shape": [10**9]}]
    status, details = refused(channel, service, huge, [b"\0" * 8])
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED and "more than" in details and "values" in details, details
    big = [{"name": features[0], "datatype": "BYTES", "shape": [1]}]
    status, details = refused(channel, service, big, [b"x" * (app.config["MAX_BODY_BYTES"] + 1)])
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED, (status, details)


def test_request_id_and_metrics(channel, client, service):
    records = records_for(service, 2)
    tensors = [{"name": name, "datatype": "FP64", "shape": [2],
                "contents": {"fp64_contents": [r[name] for r in records]}} for name in service.bundle.feature_names]
    request = MESSAGE["ModelInferRequest"](model_name=service.bundle.card["name"], inputs=tensors)
    answer, call_state = call(channel, "ModelInfer", request, metadata=(("x-request-id", "trace-7"),))
    assert answer.id == "trace-7"
    assert ("x-request-id", "trace-7") in tuple(call_state.trailing_metadata())
    text = client.get("/metrics").get_data(as_text=True)
    path = CALL.format("ModelInfer")
    assert f'endpoint="{path}",method="POST",status="200"' in text
    assert f'predicted_rows_total{{endpoint="{path}"}}' in text


def raw_tensor(name: str, datatype: str, values: list) -> tuple[dict, bytes]:
    """One feature as tritonclient sends it: raw little-endian values, BYTES as length-prefixed UTF-8."""
    if datatype == "BYTES":
        parts = [str(value).encode() for value in values]
        return {"name": name, "datatype": datatype, "shape": [len(values)]}, \
            b"".join(len(part).to_bytes(4, "little") + part for part in parts)
    layout = {"FP64": "<f8", "INT64": "<i8", "BOOL": "?"}[datatype]
    array = np.array([np.nan if value is None else value for value in values], dtype=layout)
    return {"name": name, "datatype": datatype, "shape": [len(values)]}, array.tobytes()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_models_users_bring_answer_as_model_predict(apps, trained, kind):
    """Text, integers, booleans and missing numbers as raw tensors of each feature's datatype (a BYTES tensor
    has no missing value: rows missing a text value are left out, as a Triton client must)."""
    app, item = apps[kind], trained[kind]
    service = app.extensions[EXTENSION]
    rows = item.rows
    port = free_port()
    server = start(app, "127.0.0.1", port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            metadata = call(opened, "ModelMetadata", MESSAGE["ModelMetadataRequest"](
                name=service.bundle.card["name"]))[0]
            if isinstance(rows, np.ndarray):
                columns = {tensor.name: rows[:, i].tolist() for i, tensor in enumerate(metadata.inputs)}
                keep = rows
            else:
                text = [tensor.name for tensor in metadata.inputs if tensor.datatype == "BYTES"]
                keep = rows[rows[text].notna().all(axis=1)] if text else rows
                columns = {name: keep[name].astype(object).where(keep[name].notna(), None).tolist()
                           for name in keep.columns}
            tensors, raw = zip(*(raw_tensor(tensor.name, tensor.datatype, columns[tensor.name])
                                 for tensor in metadata.inputs), strict=True)
            answer = infer(opened, service, list(tensors), list(raw))[0]
    finally:
        server.stop(0)
    assert len(keep) >= 20
    predict = values_of(answer.outputs[0], answer.raw_output_contents[0])
    expected = item.model.predict(keep).tolist()
    assert predict == ([str(v) for v in expected] if answer.outputs[0].datatype == "BYTES" else expected)


def test_a_taken_port_or_an_image_without_grpc_is_one_line(monkeypatch):
    from service import grpc_v2
    from service.workers import check_grpc_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = {"HOST": "127.0.0.1", "GRPC_PORT": port}
        assert check_grpc_port(settings) == (f"cannot serve gRPC on 127.0.0.1:{port}: [Errno 98] Address already "
                                             f"in use (set SERVICE_GRPC_PORT, 0 for none)")
    assert check_grpc_port(settings) is None and check_grpc_port({**settings, "GRPC_PORT": 0}) is None
    monkeypatch.setattr(grpc_v2, "available", lambda: False)
    assert check_grpc_port(settings) == (f"SERVICE_GRPC_PORT={port}: this image has no gRPC (grpcio); build it "
                                         f"with scripts/build.py --grpc")


def test_the_build_option_adds_the_pinned_packages_the_tests_use():
    from importlib.metadata import version

    from imagebuild import cli
    from imagebuild.bundle_requirements import grpc_pins
    assert grpc_pins() == {"grpcio": version("grpcio"), "protobuf": version("protobuf")}
    assert cli.check_arguments(cli.parse(["--grpc", "--prune"])).startswith("--grpc with --prune")
    assert cli.check_arguments(cli.parse(["--grpc"])) is None
