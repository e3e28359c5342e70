"""The OpenAPI 3.1 document, built once at start-up from the live model: its features, limits and examples."""
from __future__ import annotations

from typing import Any

from modelcard.features import values_type

from . import __version__
from .state import ServiceState

JSON = "application/json"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _v2_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/V2Error"}}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


def _platform_paths(model_path: dict[str, Any]) -> dict[str, Any]:
    """SageMaker's, MLflow's and KServe V1's routes (service/platforms.py)."""
    predictions = _ok(_obj(predictions={"type": "array", "items": {}}))
    rows = {"oneOf": [{"$ref": "#/components/schemas/Record"},
                      {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                      {"type": "array", "items": {"type": "array", "items": {}}, "description": "rows in feature order"},
                      {"$ref": "#/components/schemas/Columns"}]}
    mlflow = {"oneOf": [rows, {"$ref": "#/components/schemas/Split"}, *({"type": "object", "required": [key],
                        "properties": {key: {}, "params": {"type": "object"}}} for key in
                        ("dataframe_split", "dataframe_records", "instances", "inputs"))]}
    instances = {"type": "object", "required": ["instances"], "properties": {
        "instances": {"type": "array", "items": {}, "description": "records, or rows in feature order"},
        "parameters": {"type": "object"}}}
    health = {"200": _ok({"type": "object"}), "503": _ok({"type": "object"}, "not ready")}
    mlflow_error = _obj(error_code={"type": "string"}, message={"type": "string"})
    return {
        "/ping": {"get": {"summary": "SageMaker's and MLflow's health check", "responses": health}},
        "/health": {"get": {"summary": "The same as /ping (MLflow)", "responses": health}},
        "/version": {"get": {"summary": "The service version (MLflow's scoring protocol)", "responses": {
            "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/execution-parameters": {"get": {"summary": "SageMaker batch transform's settings", "responses": {
            "200": _ok(_obj(MaxConcurrentTransforms={"type": "integer"}, BatchStrategy={"type": "string"},
                            MaxPayloadInMB={"type": "integer"}))}}},
        "/invocations": {"post": {
            "summary": "SageMaker and MLflow scoring",
            # Only JSON is declared: generated clients (openapi-python-client) refuse text/csv bodies.
            "description": "Also takes `text/csv` (rows with a header naming the features, or in feature order) and "
                           "`application/jsonlines` (a record or row per line), and answers in CSV or JSON lines "
                           "when Accept asks for them (docs/deploy.md).",
            "requestBody": {"required": True, "content": {JSON: {"schema": mlflow}}},
            "responses": {"200": _ok(_obj(predictions={"type": "array", "items": {}})),
                **{status: _ok(mlflow_error, description) for status, description in (
                    ("400", "malformed JSON or CSV"), ("406", "no answer type wanted"),
                    ("413", "body or rows over the limit"), ("415", "an unknown body type"),
                    ("422", "a value is wrong"))}}}},
        "/v1/models": {"get": {"summary": "KServe V1: the models served", "responses": {
            "200": _ok(_obj(models={"type": "array", "items": {"type": "string"}}))}}},
        "/v1/models/{name}": {"get": {"summary": "KServe V1: whether the model is ready", "parameters": [model_path],
                                      "responses": {"200": _ok(_obj(name={"type": "string"},
                                                                    ready={"type": "boolean"})),
                                                    "404": _v2_error("unknown model")}}},
        "/v1/models/{name}:predict": {"post": {
            "summary": "KServe V1 prediction", "parameters": [model_path],
            "requestBody": {"required": True, "content": {JSON: {"schema": instances}}},
            "responses": {"200": predictions, "400": _v2_error("malformed JSON"), "404": _v2_error("unknown model"),
                          "413": _v2_error("body or rows over the limit"), "415": _v2_error("not JSON"),
                          "422": _v2_error("a value is wrong")}}},
    }


def feature_schema(entry: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one feature's value, from its card entry."""
    values = entry.get("values")
    kind = values_type(values) if entry["type"] == "category" and values else entry["type"]
    schema: dict[str, Any] = {"type": [kind, "null"] if entry.get("nullable") else kind}
    if values and entry.get("closed", True):
        schema["enum"] = [*values, None] if entry.get("nullable") else list(values)
    elif values:
        schema["examples"] = values[:20]
    notes = [entry.get("description") or entry["name"]]
    if entry.get("unit"):
        notes[0] += f" ({entry['unit']})"
    if "min" in entry and "max" in entry:
        notes.append(f"seen in training: {entry['min']} to {entry['max']}")
    if values and not entry.get("closed", True):
        notes.append("other values are accepted: the model handles unknown values")
    if entry.get("nullable"):
        notes.append("null: missing, as in training")
    schema["description"] = "; ".join(notes)
    return schema


def build(service: ServiceState, max_rows: int) -> dict[str, Any]:
    bundle, card = service.bundle, service.bundle.card
    features = card["features"]
    label = {"type": values_type(bundle.classes or [])} if bundle.is_classifier else \
        {"type": "integer"} if card["task"] in ("clustering", "outlier_detection") else {"type": "number"}
    record = {"type": "object", "additionalProperties": False, "required": [f["name"] for f in features],
              "properties": {f["name"]: feature_schema(f) for f in features}}
    columns = {"type": "object", "additionalProperties": False, "required": [f["name"] for f in features],
               "properties": {f["name"]: {"type": "object", "minProperties": 1,
                                          "additionalProperties": feature_schema(f)} for f in features}}
    prediction = _obj(model={"type": "string"}, model_version={"type": "string"},
                      predictions={"type": "array", "items": label})
    prediction["properties"]["index"] = {
        "type": "array", "items": {"type": ["string", "integer", "number", "boolean", "null"]},
        "description": "for the column and split shapes: each row's index label, in the order sent"}
    if service.predictor.has_proba:
        prediction["properties"]["probabilities"] = {
            "type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}
        prediction["required"].append("probabilities")
    for name, tail in service.predictor.extras.items():
        item: dict[str, Any] = {"type": "number"} if not tail else {"type": "array", "items": {"type": "number"}}
        prediction["properties"][name] = {"type": "array", "items": item,
                                          "description": f"the model's {name}, when ?outputs= asks for it"}
    tensor = {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
        "datatype": {"type": "string"}, "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}, "description": "flat (row-major) or nested values"}}}
    tensor_metadata = _obj(name={"type": "string"}, datatype={"type": "string"},
                           shape={"type": "array", "items": {"type": "integer", "minimum": -1}})
    model_path = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                  "example": card["name"]}
    version_path = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
                    "example": card["version"]}
    examples = {e["name"]: {"summary": e["description"], "value": e["request"]} for e in service.examples}

    predict_errors = {"400": _error("malformed JSON"), "413": _error("body or rows over the limit"),
                      "415": _error("not JSON"), "422": _error("a value or a feature is wrong")}
    v2_metadata = {"200": _ok({"$ref": "#/components/schemas/V2ModelMetadata"}),
                   "404": _v2_error("unknown model or version")}
    v2_ready = {"200": _ok({"type": "object"}), "404": _v2_error("unknown model or version"),
                "503": _ok({"type": "object"}, "not ready")}
    v2_infer = {"requestBody": {"required": True, "content": {JSON: {"schema": {
                    "$ref": "#/components/schemas/V2InferRequest"}}}},
                "responses": {"200": _ok({"$ref": "#/components/schemas/V2InferResponse"}),
                              "400": _v2_error("malformed JSON"), "404": _v2_error("unknown model or version"),
                              "413": _v2_error("body or rows over the limit"), "415": _v2_error("not JSON"),
                              "422": _v2_error("a tensor or a value is wrong")}}
    plain = {"200": _ok({"type": "object"})}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"sklearn-model-service: {card['title']}", "version": __version__,
                 "description": f"{card['description']}\n\nModel {card['name']} {card['version']}, "
                                f"artifact sha256 {card['artifact']['sha256']}. At most {max_rows} rows per request."},
        "paths": {
            "/": {"get": {"summary": "Index of the endpoints", "responses": plain}},
            "/predict": {"post": {
                "summary": "Predict for one record, a list of records, or a DataFrame's columns or split",
                "parameters": [{"name": "outputs", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "comma-separated: more of the model's outputs to answer "
                                               f"({', '.join(service.predictor.output_names)})"}],
                "requestBody": {"required": True, "content": {JSON: {
                    "schema": {"oneOf": [{"$ref": "#/components/schemas/Record"},
                                         {"type": "array", "items": {"$ref": "#/components/schemas/Record"},
                                          "minItems": 1, "maxItems": max_rows},
                                         {"$ref": "#/components/schemas/Columns"},
                                         {"$ref": "#/components/schemas/Split"}]},
                    "examples": examples}}},
                "responses": {"200": _ok({"$ref": "#/components/schemas/Prediction"}), **predict_errors}}},
            "/example": {"get": {"summary": "Runnable examples with the live model's answers", "responses": plain}},
            "/examples": {"get": {"summary": "The same as /example", "responses": plain}},
            "/metadata": {"get": {"summary": "Model card, loaded estimator, runtime", "responses": plain}},
            "/health/live": {"get": {"summary": "Liveness", "responses": plain}},
            "/health/ready": {"get": {"summary": "Readiness", "responses": {
                **plain, "503": _ok({"type": "object"}, "not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": plain}},
            "/v2": {"get": {"summary": "V2 server metadata", "responses": plain}},
            "/v2/health/live": {"get": {"summary": "V2 liveness", "responses": plain}},
            "/v2/health/ready": {"get": {"summary": "V2 readiness", "responses": {
                **plain, "503": _ok({"type": "object"}, "not ready")}}},
            "/v2/models/{name}": {"get": {"summary": "V2 model metadata", "parameters": [model_path],
                                          "responses": v2_metadata}},
            "/v2/models/{name}/versions/{version}": {"get": {
                "summary": "V2 model metadata", "parameters": [model_path, version_path], "responses": v2_metadata}},
            "/v2/models/{name}/ready": {"get": {"summary": "V2 model readiness", "parameters": [model_path],
                                                "responses": v2_ready}},
            "/v2/models/{name}/versions/{version}/ready": {"get": {
                "summary": "V2 model readiness", "parameters": [model_path, version_path], "responses": v2_ready}},
            "/v2/models/{name}/infer": {"post": {"summary": "V2 inference", "parameters": [model_path], **v2_infer}},
            "/v2/models/{name}/versions/{version}/infer": {"post": {
                "summary": "V2 inference", "parameters": [model_path, version_path], **v2_infer}},
            **_platform_paths(model_path),
        },
        "components": {"schemas": {
            "Record": record,
            "Columns": columns,
            "Split": {"type": "object", "required": ["columns", "data"], "additionalProperties": False,
                      "description": "pandas' split orientation (DataFrame.to_json(orient=\"split\"))",
                      "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                                     "index": {"type": "array", "items": {}},
                                     "data": {"type": "array", "items": {"type": "array", "items": {}}}}},
            "Prediction": prediction,
            "Error": {"type": "object", "required": ["error", "request_id"], "properties": {
                "error": _obj(code={"type": "string"}, message={"type": "string"}),
                "request_id": {"type": "string"}}},
            "V2Error": _obj(error={"type": "string"}),
            "V2ModelMetadata": _obj(name={"type": "string"}, versions={"type": "array", "items": {"type": "string"}},
                                    platform={"type": "string"}, inputs={"type": "array", "items": tensor_metadata},
                                    outputs={"type": "array", "items": tensor_metadata}),
            "V2InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": tensor, "minItems": 1},
                "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}},
            "V2InferResponse": _obj(model_name={"type": "string"}, model_version={"type": "string"},
                                    id={"type": "string"}, outputs={"type": "array", "items": tensor}),
        }},
    }
