"""The protocol's messages, made at import from one table of fields (package `inference`, service
`GRPCInferenceService`, the field numbers and types of the Open Inference Protocol's gRPC definition): no protoc
step and no generated code to keep in step. Only the calls this server answers are described."""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE, SERVICE = "inference", "GRPCInferenceService"
_F = descriptor_pb2.FieldDescriptorProto
SCALARS = {"bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "int32": _F.TYPE_INT32,
           "int64": _F.TYPE_INT64, "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "float": _F.TYPE_FLOAT,
           "double": _F.TYPE_DOUBLE}
# message -> its fields: (name, number, type, repeated). A type that is not a scalar names a message;
# "map:X" is map<string, X>. Nested messages are written Outer.Inner.
PARAMETERS = ("parameters", 4, "map:InferParameter", False)
MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "ServerLiveRequest": [],
    "ServerLiveResponse": [("live", 1, "bool", False)],
    "ServerReadyRequest": [],
    "ServerReadyResponse": [("ready", 1, "bool", False)],
    "ModelReadyRequest": [("name", 1, "string", False), ("version", 2, "string", False)],
    "ModelReadyResponse": [("ready", 1, "bool", False)],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("name", 1, "string", False), ("version", 2, "string", False),
                               ("extensions", 3, "string", True)],
    "ModelMetadataRequest": [("name", 1, "string", False), ("version", 2, "string", False)],
    "ModelMetadataResponse.TensorMetadata": [("name", 1, "string", False), ("datatype", 2, "string", False),
                                             ("shape", 3, "int64", True)],
    "ModelMetadataResponse": [("name", 1, "string", False), ("versions", 2, "string", True),
                              ("platform", 3, "string", False),
                              ("inputs", 4, "ModelMetadataResponse.TensorMetadata", True),
                              ("outputs", 5, "ModelMetadataResponse.TensorMetadata", True)],
    "InferParameter": [("bool_param", 1, "bool", False), ("int64_param", 2, "int64", False),
                       ("string_param", 3, "string", False)],
    "InferTensorContents": [("bool_contents", 1, "bool", True), ("int_contents", 2, "int32", True),
                            ("int64_contents", 3, "int64", True), ("uint_contents", 4, "uint32", True),
                            ("uint64_contents", 5, "uint64", True), ("fp32_contents", 6, "float", True),
                            ("fp64_contents", 7, "double", True), ("bytes_contents", 8, "bytes", True)],
    "ModelInferRequest.InferInputTensor": [("name", 1, "string", False), ("datatype", 2, "string", False),
                                           ("shape", 3, "int64", True), PARAMETERS,
                                           ("contents", 5, "InferTensorContents", False)],
    "ModelInferRequest.InferRequestedOutputTensor": [("name", 1, "string", False),
                                                     ("parameters", 2, "map:InferParameter", False)],
    "ModelInferRequest": [("model_name", 1, "string", False), ("model_version", 2, "string", False),
                          ("id", 3, "string", False), PARAMETERS,
                          ("inputs", 5, "ModelInferRequest.InferInputTensor", True),
                          ("outputs", 6, "ModelInferRequest.InferRequestedOutputTensor", True),
                          ("raw_input_contents", 7, "bytes", True)],
    "ModelInferResponse.InferOutputTensor": [("name", 1, "string", False), ("datatype", 2, "string", False),
                                             ("shape", 3, "int64", True), PARAMETERS,
                                             ("contents", 5, "InferTensorContents", False)],
    "ModelInferResponse": [("model_name", 1, "string", False), ("model_version", 2, "string", False),
                           ("id", 3, "string", False), PARAMETERS,
                           ("outputs", 5, "ModelInferResponse.InferOutputTensor", True),
                           ("raw_output_contents", 6, "bytes", True)],
}
# call -> (request message, response message)
CALLS = {name: (f"{name}Request", f"{name}Response")
         for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")}


ONEOFS = {"InferParameter": "parameter_choice"}  # message -> the oneof holding all its fields


def _field(message: Any, full_name: str, name: str, number: int, kind: str, repeated: bool) -> None:
    """Add one field to `message` (whose full name is `full_name`)."""
    field = message.field.add(name=name, number=number,
                              label=_F.LABEL_REPEATED if repeated or kind.startswith("map:") else _F.LABEL_OPTIONAL)
    if kind.startswith("map:"):  # protobuf's encoding of a map: a repeated nested XEntry {key = 1; value = 2}
        entry = message.nested_type.add(name=f"{name.title().replace('_', '')}Entry")
        entry.options.map_entry = True
        _field(entry, f"{full_name}.{entry.name}", "key", 1, "string", False)
        _field(entry, f"{full_name}.{entry.name}", "value", 2, kind[4:], False)
        field.type, field.type_name = _F.TYPE_MESSAGE, f".{full_name}.{entry.name}"
    elif kind in SCALARS:
        field.type = SCALARS[kind]
    else:
        field.type, field.type_name = _F.TYPE_MESSAGE, f".{PACKAGE}.{kind}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="open_inference_grpc.proto", package=PACKAGE, syntax="proto3")
    made: dict[str, Any] = {}
    for name, fields in sorted(MESSAGES.items(), key=lambda item: item[0].count(".")):  # outer ones first
        outer, _, inner = name.rpartition(".")
        message = made[name] = (made[outer].nested_type if outer else file.message_type).add(name=inner)
        for field in fields:
            _field(message, f"{PACKAGE}.{name}", *field)
        if name in ONEOFS:
            message.oneof_decl.add(name=ONEOFS[name])
            for field in message.field:
                field.oneof_index = 0
    return file


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}


MESSAGE = _classes()
