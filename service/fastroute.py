"""Predictions answered in front of Flask's request machinery (issue 28): `POST /predict`, MLflow's and
SageMaker's `/invocations`, KServe V1's `:predict` and V2's `infer`, the routes a client calls per request.

Flask pushes a request context, matches the URL, runs the before- and after-request hooks through its context
proxies and builds a Response object for every request: measured in process, about 340 µs of a one-row
prediction's 490 µs went there and to the hooks, against 145 µs for the model. This WSGI layer answers a plain
prediction (a JSON body of known length, no query string, no Content-Encoding, JSON asked for) itself, with what
the hooks and the view do, in the same order: the request id, the in-flight gauge, the body read and parsed
strictly, the rows checked, the predictor called, the answer encoded by the app's JSON provider, the same headers,
the same access line and the same metrics. Its client errors get each route's envelope from `service/errors.py`.
Anything else (another route or method, `?outputs=`, a compressed or over-long body, CSV, another Accept, V2's
binary tensors, a Vertex AI route that took /predict) goes to Flask unchanged. `tests/test_fastroute.py` checks that both answer
every request of a table with the same status, headers and bytes, and count and log it the same way.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from . import logs, tensors
from .errors import CLIENT_ERRORS, as_api_error, error_body, unexpected_logged
from .inputs import Rows, decode_json, parse_rows
from .metrics import METRICS, Metrics
from .platforms import MLFLOW_KEYS, unwrap
from .state import EXTENSION, ServiceState
from .v2 import Inference, answer_to, read_inference

JSON_TYPES = ("application/json", "application/json; charset=utf-8", "application/json;charset=utf-8")
JSON_ACCEPTED = ("", "*/*", "application/json")  # /invocations answers JSON to these (Flask's best_match)
StartResponse = Callable[..., Any]
BINARY_HEADER = "HTTP_" + tensors.HEADER.upper().replace("-", "_")  # V2's binary tensors: Flask's
Parse = Callable[[ServiceState, Any, Mapping[str, Any]], Any]  # the request read: its rows in `values`
Respond = Callable[[ServiceState, Any, str], dict[str, Any]]  # the answer to it, given the request id


def _rows(keys: tuple[str, ...] | None) -> Parse:
    """The rows of a payload: as /predict takes it (`keys` None), or inside a platform's envelope (its keys)."""
    def parse(service: ServiceState, payload: Any, config: Mapping[str, Any]) -> Rows:
        features = service.bundle.features
        return parse_rows(payload if keys is None else unwrap(payload, features, keys), features, config["MAX_ROWS"],
                          service.bundle.takes_array)
    return parse


def _predict(service: ServiceState, rows: Rows, _: str) -> dict[str, Any]:
    """/predict's answer (service/app.py)."""
    return service.predictor.predict(rows.values, rows.labels, service.predictor.asked([]))


def _predictions(service: ServiceState, rows: Rows, _: str) -> dict[str, Any]:
    """The platform routes' answer (service/platforms.py)."""
    return {"predictions": service.predictor.predict(rows.values)["predictions"]}


def _inference(service: ServiceState, payload: Any, config: Mapping[str, Any]) -> Inference:
    """A V2 inference request read (service/v2.py)."""
    return read_inference(service, payload, config["MAX_ROWS"])


@dataclass(frozen=True)
class Route:
    """A path answered here: Flask's endpoint and rule for it (the metrics' label), the content types it takes
    here, how it reads the rows and what it answers."""

    endpoint: str
    rule: str
    types: tuple[str, ...]
    parse: Parse
    respond: Respond
    json_accept_only: bool = False  # the route answers other types as Accept asks: those go to Flask
    as_jsonify: bool = True  # answered as jsonify writes it (compact, a final newline), else as app.json.dumps
    declines: bytes | None = None  # a body that holds these bytes goes to Flask (V2: binary data asked for)


def routes(model: str, version: str) -> dict[str, Route]:
    def v2(rule: str) -> Route:
        return Route("v2.infer", rule, ("", *JSON_TYPES), _inference, answer_to, as_jsonify=False,
                     declines=b"binary_data")
    return {
        "/predict": Route("api.predict", "/predict", JSON_TYPES, _rows(None), _predict),
        "/invocations": Route("platforms.invocations", "/invocations", ("", *JSON_TYPES), _rows(MLFLOW_KEYS),
                              _predictions, json_accept_only=True),
        f"/v1/models/{model}:predict": Route("platforms.v1_predict", "/v1/models/<name>:predict", ("", *JSON_TYPES),
                                             _rows(("instances",)), _predictions),
        f"/v2/models/{model}/infer": v2("/v2/models/<name>/infer"),
        f"/v2/models/{model}/versions/{version}/infer": v2("/v2/models/<name>/versions/<version>/infer"),
    }


def install(app: Flask) -> None:
    """Put the routes in front of `app.wsgi_app`, each only where Flask's own view would answer it (Vertex AI's
    AIP_PREDICT_ROUTE may take /predict) and where the JSON provider is the compact one written here."""
    if app.debug or app.json.compact is not None:  # type: ignore[attr-defined]
        return
    adapter, card = app.url_map.bind("localhost"), app.extensions[EXTENSION].bundle.card
    taken = {path: route for path, route in routes(card["name"], card["version"]).items()
             if adapter.match(path, "POST")[0] == route.endpoint}
    app.wsgi_app = FastRoutes(app, app.wsgi_app, taken)  # type: ignore[method-assign]


def read_body(stream: Any, length: int) -> bytes:
    """The body's `length` bytes. waitress holds a body under the cap in a BytesIO, whose getvalue() hands over its
    own buffer where read() copies it: a MiB less per 1 MiB body in flight (memory: docs/operations.md)."""
    if type(stream) is io.BytesIO and stream.tell() == 0:
        body = stream.getvalue()
        if len(body) == length:
            return body
    return stream.read(length)


class FastRoutes:
    """The WSGI callable: a plain prediction answered here, anything else by `flask_app`."""

    def __init__(self, app: Flask, flask_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
                 taken: dict[str, Route]):
        self.flask_app, self.routes = flask_app, taken
        self.config = app.config
        self.service: ServiceState = app.extensions[EXTENSION]
        self.metrics: Metrics = app.extensions[METRICS]
        self.dumps = app.json.dumps
        self.max_body = int(app.config["MAX_CONTENT_LENGTH"])

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, length = environ["PATH_INFO"], environ.get("CONTENT_LENGTH")
        route = self.routes.get(path)
        if (route is None or environ["REQUEST_METHOD"] != "POST" or environ.get("QUERY_STRING")
                or not length or not length.isdigit() or int(length) > self.max_body
                or environ.get("CONTENT_TYPE", "").lower() not in route.types
                or environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower() != "identity"
                or BINARY_HEADER in environ
                or (route.json_accept_only and environ.get("HTTP_ACCEPT", "").strip().lower() not in JSON_ACCEPTED)):
            return self.flask_app(environ, start_response)
        started = time.perf_counter()
        body = read_body(environ["wsgi.input"], int(length))
        if route.declines is not None and route.declines in body:
            return self.flask_app({**environ, "wsgi.input": io.BytesIO(body)}, start_response)
        request_id = logs.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        self.metrics.in_flight.inc()
        try:
            status, body, rows = self.answer(route, path, body, request_id)
            start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("X-Request-ID", request_id), ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")])
            self.metrics.answered(route.rule, "POST", status, time.perf_counter() - started, rows)
            logs.access("POST", path, status, time.perf_counter() - started, rows, request_id)
        finally:
            self.metrics.in_flight.dec()
        return [body]

    def answer(self, route: Route, path: str, body: bytes, request_id: str) -> tuple[int, bytes, int | None]:
        """The status, the encoded answer and the rows predicted (None if the request did not get that far)."""
        rows = None  # as Flask's view sets g.rows: once the rows are read, before the model is asked
        try:
            with self.service.predictor.coming():
                parsed = route.parse(self.service, decode_json(body, self.config), self.config)
                rows = len(parsed.values)
                result = route.respond(self.service, parsed, request_id)
            return 200, self.encode(result) if route.as_jsonify else self.dumps(result).encode(), rows
        except CLIENT_ERRORS as exc:
            error = as_api_error(exc)
            return error.status, self.encode(error_body(path, error.code, error.message, error.field,
                                                        request_id)), rows
        except Exception:  # noqa: BLE001 - answered and logged with its traceback, as Flask's handler does
            message = unexpected_logged("POST", path, request_id)
            return 500, self.encode(error_body(path, "internal_error", message, None, request_id)), rows

    def encode(self, payload: Any) -> bytes:
        """As Flask's jsonify writes it outside debug mode: compact, with a final newline."""
        return f"{self.dumps(payload, indent=None, separators=(',', ':'))}\n".encode()
