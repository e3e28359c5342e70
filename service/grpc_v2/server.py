"""The gRPC server of a worker: the protocol's six calls, each a thin adapter onto service/v2.py.

Each worker runs one beside waitress, on SERVICE_GRPC_PORT (the workers share it with SO_REUSEPORT, as they share
the REST socket), with the REST side's limits: messages up to SERVICE_MAX_BODY_BYTES, SERVICE_THREADS calls at a
time, SERVICE_CONNECTION_LIMIT calls waiting. Inputs come as typed contents or raw bytes (what tritonclient sends);
outputs leave as raw bytes, as Triton answers. A call is counted and logged like a REST request, under its
method's path, with the HTTP status it would have had; an error is the gRPC status of that HTTP status.
"""
from __future__ import annotations

import logging
import math
import time
from concurrent import futures
from typing import Any
from collections.abc import Callable

import grpc
from flask import Flask, g

from .. import __version__, logs, tensors
from ..errors import CLIENT_ERRORS, ApiError, as_api_error
from ..inputs import check_value_count
from ..metrics import METRICS
from ..state import EXTENSION
from ..v2 import answer_in_app, metadata_of, served_model
from .protocol import CALLS, MESSAGE, PACKAGE, SERVICE

log = logging.getLogger(__name__)
# An error's HTTP status -> its gRPC status (the one exception-to-status map is service/errors.py's ApiError;
# this only translates it, as KServe's and Triton's servers do).
STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
                413: grpc.StatusCode.RESOURCE_EXHAUSTED, 422: grpc.StatusCode.INVALID_ARGUMENT,
                503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
# A datatype -> the field of InferTensorContents holding it (FP16 has none: raw bytes only)
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_tensor", message)


def _values(tensor: Any) -> list[Any]:
    """A typed-contents tensor's values (NaN: a missing value, as in a raw or REST binary tensor)."""
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise _invalid(f"input {tensor.name!r}: datatype {tensor.datatype!r} has no typed contents: send raw bytes")
    values = list(getattr(tensor.contents, field))
    if tensor.datatype == "BYTES":
        try:
            return [value.decode("utf-8") for value in values]
        except UnicodeDecodeError:
            raise _invalid(f"input {tensor.name!r}: a BYTES element is not UTF-8 text") from None
    return [None if isinstance(value, float) and math.isnan(value) else value for value in values]


def payload_of(request: Any) -> dict[str, Any]:
    """A ModelInferRequest as the REST request it stands for: inputs with their data, the outputs asked for."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise _invalid(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs")
    check_value_count(sum(math.prod(tensor.shape) for tensor in request.inputs))  # before any becomes a value
    inputs = [{"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape),
               "data": tensors.decode(tensor.name, tensor.datatype, raw[i]) if raw else _values(tensor)}
              for i, tensor in enumerate(request.inputs)]
    payload: dict[str, Any] = {"inputs": inputs, "id": request.id}
    if request.outputs:
        payload["outputs"] = [{"name": output.name} for output in request.outputs]
    return payload


def infer_response(answer: dict[str, Any]) -> Any:
    """The answer of service/v2.py as a ModelInferResponse with raw output contents."""
    return MESSAGE["ModelInferResponse"](
        model_name=answer["model_name"], model_version=answer["model_version"], id=answer["id"],
        outputs=[{"name": o["name"], "datatype": o["datatype"], "shape": o["shape"]} for o in answer["outputs"]],
        raw_output_contents=[tensors.encode(output) for output in answer["outputs"]])


class Calls:
    """The six calls, each run in the app's context (settings, the served model, g for the request's id)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def ServerLive(self, request: Any) -> Any:
        return MESSAGE["ServerLiveResponse"](live=True)

    def ServerReady(self, request: Any) -> Any:
        return MESSAGE["ServerReadyResponse"](ready=self.app.extensions[EXTENSION].ready.is_set())

    def ModelReady(self, request: Any) -> Any:
        service = served_model(request.name, request.version or None)
        return MESSAGE["ModelReadyResponse"](ready=service.ready.is_set())

    def ServerMetadata(self, request: Any) -> Any:
        return MESSAGE["ServerMetadataResponse"](name="sklearn-model-service", version=__version__)

    def ModelMetadata(self, request: Any) -> Any:
        return MESSAGE["ModelMetadataResponse"](**metadata_of(served_model(request.name, request.version or None)))

    def ModelInfer(self, request: Any) -> Any:
        service = served_model(request.model_name, request.model_version or None)
        with service.predictor.coming():
            answer = answer_in_app(service, payload_of(request))
        return infer_response(answer)


def _handler(app: Flask, name: str, call: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    """`call` answering in the app's context, counted and logged like a REST request; an error aborts the call
    with its gRPC status and message."""
    path = f"/{PACKAGE}.{SERVICE}/{name}"
    metrics = app.extensions[METRICS]
    probe = logs.is_probe(path)

    def handle(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        status, message = 200, ""
        with app.app_context():
            g.request_id = logs.request_id(dict(context.invocation_metadata()).get("x-request-id", ""))
            try:
                answer = call(request)
                context.set_trailing_metadata((("x-request-id", g.request_id),))
                return answer
            except CLIENT_ERRORS as exc:
                error = as_api_error(exc)
                status, message = error.status, error.message
            except Exception:  # logged with its traceback, never sent
                log.exception("%s failed", path, extra={"request_id": g.request_id})
                status, message = 500, "internal error: the server logged the details"
            finally:
                latency = time.perf_counter() - started
                if not probe:
                    labels = (path, "POST", str(status))
                    metrics.requests.labels(*labels).inc()
                    metrics.latency.labels(*labels).observe(latency)
                    if status == 200 and g.get("rows"):
                        metrics.rows.labels(path).inc(g.rows)
                logs.access("POST", path, status, latency, g.get("rows"), g.request_id)
            context.set_trailing_metadata((("x-request-id", g.request_id),))
            context.abort(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL), message)
    return handle


def handlers(app: Flask) -> Any:
    """The service's handlers for grpc.Server.add_generic_rpc_handlers."""
    calls = Calls(app)
    methods = {name: grpc.unary_unary_rpc_method_handler(
        _handler(app, name, getattr(calls, name)), request_deserializer=MESSAGE[request].FromString,
        response_serializer=MESSAGE[response].SerializeToString) for name, (request, response) in CALLS.items()}
    return grpc.method_handlers_generic_handler(f"{PACKAGE}.{SERVICE}", methods)


def start(app: Flask, host: str, port: int) -> Any:
    """A started grpc.Server for `app` on host:port, with the REST side's limits."""
    config = app.config
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config["THREADS"], thread_name_prefix="grpc"),
        handlers=(handlers(app),),
        maximum_concurrent_rpcs=config["THREADS"] + config["CONNECTION_LIMIT"],
        options=[("grpc.max_receive_message_length", config["MAX_BODY_BYTES"]),
                 ("grpc.max_send_message_length", -1),
                 ("grpc.so_reuseport", 1)])
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    return server
