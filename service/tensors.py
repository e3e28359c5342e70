"""The Open Inference Protocol's binary tensor data extension, as tritonclient and the kserve SDK use it by default.

A request may carry its JSON header followed by raw tensor bytes: the `Inference-Header-Content-Length` header
gives the JSON's length, and each input with `parameters.binary_data_size` takes that many bytes, in input order
(little-endian numbers, one byte per BOOL, BYTES elements as a 4-byte length then the bytes). A NaN in a binary
float tensor is a missing value, as null is in JSON. An answer is binary for the outputs asked so
(`parameters.binary_data_output` on the request, `parameters.binary_data` on an output), in the same framing.
Without the header the body is JSON, with or without a JSON Content-Type (the reference servers accept both).
"""
from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from flask import Response, current_app, request

from .errors import ApiError
from .inputs import check_value_count, decode_json, request_body

HEADER = "Inference-Header-Content-Length"
EXTENSION = "binary_tensor_data"
LAYOUTS = {"BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "<u1",
           "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
JSON_TYPES = ("", "application/json")


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_tensor", message)


def read_request() -> dict[str, Any]:
    """The inference request, with any binary input data decoded into its tensor's `data`."""
    header = request.headers.get(HEADER)
    if header is None and request.mimetype not in JSON_TYPES and not request.is_json:
        raise ApiError(415, "unsupported_media_type", f"send JSON (Content-Type: application/json, or none), or "
                                                      f"binary tensors with {HEADER} (got {request.mimetype!r})")
    body = request_body()
    if header is None:
        return decode_json(body)
    if not header.isdigit() or int(header) > len(body):
        raise ApiError(400, "invalid_json", f"{HEADER} must be the length of the JSON part of the body, at most "
                                            f"{len(body)} bytes (got {header!r})")
    payload = decode_json(body[:int(header)])
    if isinstance(payload, dict) and isinstance(payload.get("inputs"), list):
        payload = {**payload, "inputs": _with_binary_data(payload["inputs"], body[int(header):])}
    return payload


def _with_binary_data(inputs: list[Any], blob: bytes) -> list[Any]:
    """Each input that announces binary_data_size, with its bytes decoded into `data`."""
    decoded, offset, elements = [], 0, 0
    for tensor in inputs:
        size = (tensor.get("parameters") or {}).get("binary_data_size") if isinstance(tensor, dict) else None
        if size is None:
            decoded.append(tensor)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(blob):
            raise _invalid(f"input {tensor.get('name')!r}: binary_data_size {size!r} does not fit the "
                           f"{len(blob) - offset} bytes left after the JSON")
        datatype = tensor.get("datatype")  # a BYTES element takes at least its 4-byte length
        layout = LAYOUTS.get(datatype) if isinstance(datatype, str) else None
        elements += size // (np.dtype(layout).itemsize if layout else 4)
        check_value_count(elements)  # before they become Python values
        decoded.append({**tensor, "data": decode(tensor.get("name"), tensor.get("datatype"), blob[offset:offset + size])})
        offset += size
    if offset != len(blob):
        raise _invalid(f"{len(blob) - offset} bytes of binary data are not claimed by any input's binary_data_size")
    return decoded


def decode(name: Any, datatype: Any, chunk: bytes) -> list[Any]:
    """A tensor's values from its raw bytes (REST's binary extension, gRPC's raw contents)."""
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise _invalid(f"input {name!r}: a BYTES element's length is cut short")
            (length,) = struct.unpack_from("<I", chunk, offset)
            element = chunk[offset + 4:offset + 4 + length]
            if len(element) != length:
                raise _invalid(f"input {name!r}: a BYTES element is shorter than its length")
            try:
                values.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                raise _invalid(f"input {name!r}: a BYTES element is not UTF-8 text") from None
            offset += 4 + length
        return values
    layout = LAYOUTS.get(datatype) if isinstance(datatype, str) else None
    if layout is None:
        raise _invalid(f"input {name!r}: unknown datatype {datatype!r}")
    if len(chunk) % np.dtype(layout).itemsize:
        raise _invalid(f"input {name!r}: {len(chunk)} bytes is not a whole number of {datatype} values")
    values = np.frombuffer(chunk, dtype=layout).tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def wants_binary(payload: dict[str, Any], output: str) -> bool:
    """Whether `output` should be answered as binary data."""
    default = bool((payload.get("parameters") or {}).get("binary_data_output", False))
    for item in payload.get("outputs") or []:
        if isinstance(item, dict) and item.get("name") == output:
            return bool((item.get("parameters") or {}).get("binary_data", default))
    return default


def encode(output: dict[str, Any]) -> bytes:
    """An output's values as raw bytes."""
    if output["datatype"] == "BYTES":
        parts = [str(value).encode("utf-8") for value in output["data"]]
        return b"".join(struct.pack("<I", len(part)) + part for part in parts)
    return np.asarray(output["data"], dtype=LAYOUTS[output["datatype"]]).tobytes()


def respond(answer: dict[str, Any], binary: set[str]) -> Response:
    """The answer as JSON, or as a JSON header and raw bytes for the outputs in `binary`."""
    if not binary:
        return Response(current_app.json.dumps(answer), mimetype="application/json")
    outputs, blobs = [], []
    for output in answer["outputs"]:
        if output["name"] in binary:
            blob = encode(output)
            blobs.append(blob)
            output = {key: value for key, value in output.items() if key != "data"}
            output["parameters"] = {**output.get("parameters", {}), "binary_data_size": len(blob)}
        outputs.append(output)
    header = current_app.json.dumps({**answer, "outputs": outputs}).encode()
    response = Response(header + b"".join(blobs), mimetype="application/octet-stream")
    response.headers[HEADER] = str(len(header))
    return response
