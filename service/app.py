"""The Flask application factory: the model is loaded, verified and warmed up once, in create_app()."""
from __future__ import annotations

import platform
import time
from typing import Any
from collections.abc import Mapping

import sklearn
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.json.provider import DefaultJSONProvider

from . import __version__, fastroute, logs, metrics, openapi, platforms
from .bundle import final_estimator, fitted_estimator, load_bundle
from .config import settings_from_env
from .errors import register_error_handlers
from .examples import build_examples
from .inputs import parse_rows, read_json_body, value_budget
from .metrics import Metrics
from .predictor import Predictor
from .state import EXTENSION, ServiceState, state
from .docs import docs
from .v2 import v2

OPENAPI = "openapi"

api = Blueprint("api", __name__)


class InOrder(DefaultJSONProvider):
    """Flask's JSON, keeping responses' keys in the order they are written."""

    sort_keys = False


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; raises BundleError if the model bundle cannot be served."""
    app = Flask(__name__)
    app.config.from_mapping(settings_from_env())
    if config:
        app.config.from_mapping(config)
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]
    app.json = InOrder(app)

    bundle = load_bundle(app.config["MODEL_DIR"])
    app.config["MAX_JSON_VALUES"] = value_budget(app.config["MAX_ROWS"], len(bundle.features))
    app_metrics = Metrics(bundle.card)
    predictor = Predictor(bundle, app.config["BATCH_MAX_ROWS"], app.config["BATCH_MAX_WAIT_MS"] / 1000,
                          fast_path=bool(app.config["FAST_PATH"]), on_fallback=app_metrics.fast_path_fallback)
    examples = build_examples(bundle, predictor)  # doubles as the warm-up prediction
    service = ServiceState(bundle=bundle, predictor=predictor, examples=examples)
    app.extensions[EXTENSION] = service

    register_error_handlers(app)
    app.before_request(_begin_request)
    logs.install(app)
    metrics.install(app, app_metrics)
    app.after_request(_common_headers)
    platforms.install(app)
    app.register_blueprint(api)
    app.register_blueprint(v2)
    app.register_blueprint(docs)
    app.extensions[OPENAPI] = openapi.build(service, app.config["MAX_ROWS"])
    fastroute.install(app)  # last: every route is registered
    service.ready.set()
    return app


def _begin_request() -> None:
    """The request's id and start time, shared by the access log and the metrics."""
    g.started = time.perf_counter()
    g.request_id = logs.request_id(request.headers.get("X-Request-ID", ""))


def _common_headers(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")  # the /docs assets set their own
    return response


ENDPOINTS = [
    ("GET", "/", "this index"),
    ("POST", "/predict", "predictions for one record, a list of records, or a DataFrame's columns or split"),
    ("GET", "/example", "runnable examples for each input shape, with the live model's answers"),
    ("GET", "/examples", "the same as /example"),
    ("GET", "/metadata", "the model card and what the loaded estimator says about itself"),
    ("GET", "/health/live", "200 while the process serves HTTP"),
    ("GET", "/health/ready", "200 once the model is loaded and warmed up, 503 otherwise"),
    ("GET", "/metrics", "Prometheus metrics (health probes and /metrics itself not counted)"),
    ("GET", "/openapi.json", "OpenAPI 3.1 description of every endpoint, with the live model's features"),
    ("GET", "/docs", "Swagger UI for /openapi.json, served from the image (no CDN)"),
    ("GET", "/v2", "Open Inference Protocol (V2): server metadata"),
    ("GET", "/v2/health/live", "V2 liveness"),
    ("GET", "/v2/health/ready", "V2 readiness"),
    ("GET", "/v2/models/{name}[/versions/{version}]", "V2 model metadata"),
    ("GET", "/v2/models/{name}[/versions/{version}]/ready", "V2 model readiness"),
    ("POST", "/v2/models/{name}[/versions/{version}]/infer", "V2 inference"),
    ("GET", "/ping", "SageMaker's and MLflow's health check: 200 once ready (also /health)"),
    ("POST", "/invocations", "SageMaker and MLflow scoring: JSON (MLflow's keys too), CSV or JSON lines in; "
                             "JSON, CSV or JSON lines out, as Accept asks"),
    ("GET", "/execution-parameters", "SageMaker batch transform's settings"),
    ("GET", "/version", "the service version (MLflow's scoring protocol)"),
    ("GET", "/v1/models", "KServe V1: the models served"),
    ("GET", "/v1/models/{name}", "KServe V1: whether the model is ready"),
    ("POST", "/v1/models/{name}:predict", "KServe V1 prediction: {\"instances\": [...]} -> {\"predictions\": [...]}"),
]


@api.get("/")
def index() -> Response:
    card = state().bundle.card
    return jsonify(status="alive", service="sklearn-model-service", version=__version__,
                   model={"name": card["name"], "version": card["version"], "title": card["title"]},
                   endpoints=[{"method": m, "path": p, "description": d} for m, p, d in ENDPOINTS])


@api.post("/predict")
def predict() -> Response:
    service = state()
    with service.predictor.coming():
        payload = read_json_body()
        outputs = service.predictor.asked([n for n in request.args.get("outputs", "").split(",") if n])
        rows = parse_rows(payload, service.bundle.features, current_app.config["MAX_ROWS"], service.bundle.takes_array)
        g.rows = len(rows.values)
        result = service.predictor.predict(rows.values, rows.labels, outputs)
    return jsonify(result)


@api.get("/example")
@api.get("/examples")
def examples() -> Response:
    url = request.host_url + "predict"
    listed = []
    for example in state().examples:
        body = current_app.json.dumps(example["request"])
        curl = f"curl -s -X POST {url} -H 'Content-Type: application/json' -d '{body}'"
        listed.append({**example, "curl": curl})
    return jsonify(endpoint="/predict", method="POST", examples=listed)


def _simple_params(estimator: Any) -> dict[str, Any]:
    """An estimator's parameters whose values JSON can carry as they are."""
    return {key: value for key, value in estimator.get_params(deep=False).items()
            if value is None or isinstance(value, (bool, int, float, str))}


@api.get("/metadata")
def metadata() -> Response:
    bundle = state().bundle
    model = fitted_estimator(bundle.model)
    final = final_estimator(model)
    loaded = {
        "estimator": type(final).__name__,
        **({"search": type(bundle.model).__name__} if model is not bundle.model else {}),
        "pipeline": [f"{name}: {type(step).__name__}" for name, step in model.steps] if hasattr(model, "steps") else None,
        "parameters": _simple_params(final),
        "feature_order": bundle.feature_names,
        "input": {"dataframe": "DataFrame", "texts": "list of texts"}.get(bundle.input, "NumPy array"),
        "classes": bundle.classes,
        "outputs": state().predictor.output_names,
        "sha256": bundle.sha256,
    }
    runtime = {"service_version": __version__, "python": platform.python_version(),
               "scikit_learn": sklearn.__version__, "inference": state().predictor.inference,
               "micro_batching": state().predictor.batcher is not None,
               "limits": {"max_rows": current_app.config["MAX_ROWS"],
                          "max_body_bytes": current_app.config["MAX_BODY_BYTES"]}}
    return jsonify(card=bundle.card, model=loaded, runtime=runtime)


@api.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(current_app.extensions[OPENAPI])


@api.get("/health/live")
def live() -> Response:
    return jsonify(status="alive")


@api.get("/health/ready")
def ready() -> Response:
    service = state()
    if not service.ready.is_set():
        response = jsonify(status="not ready")
        response.status_code = 503
        return response
    return jsonify(status="ready", model=service.bundle.card["name"])
