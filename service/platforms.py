"""The routes managed platforms and their clients call, each a thin adapter onto /predict's parsing, validation and
prediction (service/inputs.py, service/predictor.py):

- Amazon SageMaker (`docker run IMAGE serve`): GET /ping, POST /invocations, GET /execution-parameters;
- MLflow's scoring protocol (`mlflow models serve`, mlflow-skinny's ScoringServerClient): GET /ping, /health,
  /version, and POST /invocations with `dataframe_split`, `dataframe_records`, `instances` or `inputs`;
- KServe V1 (its SDK's default protocol): GET /v1/models, GET /v1/models/<name>, POST /v1/models/<name>:predict
  (liveness is GET /'s `"status": "alive"`);
- Vertex AI: the routes its AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE name, `{"instances", "parameters"}` in.

/invocations reads JSON (any /predict shape, or MLflow's four keys), CSV (a header naming the features, or rows in
feature order) and JSON lines, and answers in what Accept asks for: JSON `{"predictions": [...]}`, CSV (one
prediction per line) or JSON lines; anything else is 406.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import Any
from collections.abc import Callable, Iterable, Iterator, Sequence

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from modelcard.features import Feature, values_type

from . import __version__
from .config import worker_count
from .cpus import budget as cpu_budget
from .errors import ApiError
from .inputs import check_json_values, check_value_count, decode_json, parse_rows, request_body
from .state import state
from .v2 import served_model

platforms = Blueprint("platforms", __name__)

JSON, CSV, JSON_LINES = "application/json", "text/csv", "application/jsonlines"
LINES_TYPES = {JSON_LINES, "application/jsonl", "application/x-jsonlines", "application/x-ndjson"}
ANSWERS = (JSON, CSV, JSON_LINES)
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
NUMBER_MISSING = {"", "NaN", "nan", "NA", "N/A", "null", "None"}  # a missing number in a CSV cell
INTEGER = re.compile(r"^[+-]?\d+$")
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _csv_value(feature: Feature, text: str) -> Any:
    """A CSV cell as the JSON value /predict would take; a cell that does not read as the feature's type is
    left as text, for the feature's own check to refuse with its usual message."""
    kind = values_type(feature.values) if feature.type == "category" and feature.values else feature.type
    if text == "" or (kind in ("number", "integer") and text in NUMBER_MISSING):
        return None
    if kind in ("number", "integer"):
        if INTEGER.match(text):
            return int(text)
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        return BOOLEANS.get(text.lower(), text)
    return text


def header_of(row: list[str], features: Sequence[Feature]) -> list[str] | None:
    """The row, when it is a header naming every feature once (in any order)."""
    names = [feature.name for feature in features]
    return row if len(row) == len(names) and set(row) == set(names) else None


def typed_records(rows: Iterable[tuple[int, list[str]]], order: list[str], features: Sequence[Feature],
                  max_rows: int) -> list[dict[str, Any]]:
    """(line number, CSV row) pairs as records of the columns in `order`, each cell typed by its feature."""
    by_name = {feature.name: feature for feature in features}
    records: list[dict[str, Any]] = []
    for line, row in rows:
        if len(row) != len(order):
            raise ApiError(422, "invalid_record", f"CSV line {line}: {len(row)} values, the model takes "
                                                  f"{len(order)} ({', '.join(order)})")
        if len(records) == max_rows:
            raise ApiError(413, "too_many_rows", f"more than {max_rows} rows in one request (split the request "
                                                 f"or raise SERVICE_MAX_ROWS)")
        records.append({name: _csv_value(by_name[name], cell) for name, cell in zip(order, row, strict=True)})
    return records


def csv_records(body: bytes, features: Sequence[Feature], max_rows: int) -> list[dict[str, Any]]:
    """CSV rows as records: with a header naming every feature (in any order), or in feature order without one."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_csv", "the CSV body is not UTF-8 text") from None
    check_value_count(text.count(",") + text.count("\n") + 1)
    rows = [(line, row) for line, row in enumerate(_reader(io.StringIO(text)), start=1) if row]
    header = header_of(rows[0][1], features) if rows else None
    order = header or [feature.name for feature in features]
    return typed_records(rows[1:] if header else rows, order, features, max_rows)


def _reader(stream: Any) -> Iterator[list[str]]:
    """csv.reader, its errors as 400."""
    try:
        yield from csv.reader(stream)
    except csv.Error as exc:
        raise ApiError(400, "invalid_csv", f"malformed CSV: {exc}") from None


def _lines(body: bytes, max_rows: int) -> list[Any]:
    """JSON lines: one record (or array in feature order) per line."""
    check_json_values(body)  # every line's values together, as for one JSON document
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) > max_rows:
        raise ApiError(413, "too_many_rows", f"{len(lines)} rows in one request; the limit is {max_rows}")
    return [decode_json(line) for line in lines]


def _records(items: Any, features: Sequence[Feature], key: str) -> Any:
    """`instances`/`inputs`: records as they are, rows in feature order, or a column per feature."""
    names = [feature.name for feature in features]
    if isinstance(items, dict) and items and all(isinstance(values, list) for values in items.values()):
        lengths = {len(values) for values in items.values()}
        if len(lengths) != 1:
            raise ApiError(422, "inconsistent_index", f"'{key}': every column must have the same number of values")
        return [dict(zip(items, values, strict=True)) for values in zip(*items.values(), strict=True)]
    if not isinstance(items, list):
        raise ApiError(422, "invalid_shape", f"'{key}' must be a list of records or of rows in feature order")
    if all(isinstance(item, list) for item in items):
        wrong = next((i for i, item in enumerate(items) if len(item) != len(names)), None)
        if wrong is not None:
            raise ApiError(422, "invalid_record", f"{key}[{wrong}]: {len(items[wrong])} values, the model takes "
                                                  f"{len(names)} in this order: {', '.join(names)}")
        return [dict(zip(names, item, strict=True)) for item in items]
    return items


def unwrap(payload: Any, features: Sequence[Feature], keys: Sequence[str]) -> Any:
    """The rows inside a platform's envelope ({"instances": ...}, MLflow's keys), or the payload as /predict takes
    it; `params`/`parameters` beside them are accepted and not used."""
    if isinstance(payload, list) and payload and all(isinstance(item, list) for item in payload):
        return _records(payload, features, "rows")  # JSON lines of arrays, or a bare list of rows
    if not isinstance(payload, dict):
        return payload
    found = [key for key in keys if key in payload]
    if not found:
        return payload
    extra = set(payload) - {found[0], "params", "parameters"}
    if len(found) > 1 or extra:
        raise ApiError(422, "invalid_shape", f"send one of {', '.join(keys)}, with 'params' or 'parameters' at "
                                             f"most beside it; got {', '.join(sorted(payload))}")
    inner = payload[found[0]]
    return inner if found[0] in ("dataframe_split", "dataframe_records") else _records(inner, features, found[0])


def predictions_for(payload: Any) -> list[Any]:
    """The predictions for a payload in any shape /predict takes, by the same path."""
    service = state()
    rows = parse_rows(payload, service.bundle.features, current_app.config["MAX_ROWS"], service.bundle.takes_array)
    g.rows = len(rows.values)
    return service.predictor.predict(rows.values)["predictions"]


def _answer(predictions: list[Any]) -> Response:
    """The predictions in the type Accept asks for (JSON when it names none)."""
    accept = request.accept_mimetypes
    chosen = accept.best_match(ANSWERS, default=JSON) if accept else JSON
    if accept and accept.quality(chosen) <= 0:
        raise ApiError(406, "not_acceptable", f"cannot answer in {request.headers.get('Accept')}: ask for "
                                              f"{', '.join(ANSWERS)}")
    if chosen == CSV:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([value] for value in predictions)
        return Response(buffer.getvalue(), mimetype=CSV)
    if chosen == JSON_LINES:
        return Response("".join(json.dumps(value) + "\n" for value in predictions), mimetype=JSON_LINES)
    return jsonify(predictions=predictions)


def _body() -> Any:
    """The request's rows as /predict takes them, read by Content-Type."""
    features, max_rows = state().bundle.features, current_app.config["MAX_ROWS"]
    mimetype = request.mimetype or JSON  # SageMaker's and MLflow's clients may send JSON without a type
    if mimetype == CSV:
        return csv_records(request_body(), features, max_rows)
    if mimetype in LINES_TYPES:
        return unwrap(_lines(request_body(), max_rows), features, ())
    if mimetype == JSON or mimetype.endswith("+json"):
        return unwrap(decode_json(request_body()), features, MLFLOW_KEYS)
    raise ApiError(415, "unsupported_media_type", f"send {JSON}, {CSV} or {JSON_LINES} (got {mimetype!r})")


def _ready() -> Response:
    ready = state().ready.is_set()
    response = jsonify(status="ready" if ready else "not ready")
    response.status_code = 200 if ready else 503
    return response


@platforms.get("/ping")
@platforms.get("/health")
def ping() -> Response:
    """SageMaker's and MLflow's health check: 200 once the model answers."""
    return _ready()


@platforms.get("/version")
def version() -> Response:
    return Response(__version__, mimetype="text/plain")


@platforms.get("/execution-parameters")
def execution_parameters() -> Response:
    """What SageMaker batch transform asks of a container before it sends mini-batches."""
    return jsonify(MaxConcurrentTransforms=worker_count(current_app.config, cpu_budget().count),
                   BatchStrategy="MULTI_RECORD", MaxPayloadInMB=max(1, current_app.config["MAX_BODY_BYTES"] >> 20))


@platforms.post("/invocations")
def invocations() -> Response:
    with state().predictor.coming():
        payload = _body()
        predictions = predictions_for(payload)
    return _answer(predictions)


@platforms.get("/v1/models")
def v1_models() -> Response:
    return jsonify(models=[state().bundle.card["name"]])


@platforms.get("/v1/models/<name>")
def v1_model(name: str) -> Response:
    service = served_model(name)
    return jsonify(name=name, ready=service.ready.is_set())


def _instances() -> Response:
    """KServe V1 and Vertex AI: {"instances": [...], "parameters": {...}} -> {"predictions": [...]} (a body in
    /predict's shapes is taken too: Vertex may be given /predict itself as its predict route)."""
    with state().predictor.coming():
        if request.mimetype not in ("", JSON):
            raise ApiError(415, "unsupported_media_type", f"send {JSON} (got {request.mimetype!r})")
        payload = decode_json(request_body())
        predictions = predictions_for(unwrap(payload, state().bundle.features, ("instances",)))
    return jsonify(predictions=predictions)


@platforms.post("/v1/models/<name>:predict")
def v1_predict(name: str) -> Response:
    served_model(name)
    return _instances()


def install(app: Flask, environ: Any = None) -> None:
    """The platform routes, and Vertex AI's own health and predict routes when its variables name them (installed
    before the other routes: a Vertex route that is also one of ours, /predict say, is Vertex's)."""
    environ = os.environ if environ is None else environ
    app.register_blueprint(platforms)
    routes: list[tuple[str, str, Callable[[], Response], str]] = [
        ("AIP_HEALTH_ROUTE", "vertex_health", _ready, "GET"), ("AIP_PREDICT_ROUTE", "vertex_predict", _instances, "POST")]
    for variable, endpoint, view, method in routes:
        route = environ.get(variable)
        if route:
            app.add_url_rule(route if route.startswith("/") else f"/{route}", endpoint, view, methods=[method])
