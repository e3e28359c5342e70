"""The routes of SageMaker, MLflow's scoring protocol, KServe V1 and Vertex AI (service/platforms.py), in process:
each answers exactly what /predict answers for the same rows, in every body shape and answer type it takes."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from service import platforms
from service.__main__ import parse
from service.app import create_app
from service.config import ConfigError, settings_from_env
from service.state import EXTENSION

from .conftest import BUNDLES

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def iris():
    return create_app({"MODEL_DIR": str(BUNDLES["iris"]), "MAX_ROWS": 50, "MAX_BODY_BYTES": 64 * 1024})


def names(app: Any) -> list[str]:
    return app.extensions[EXTENSION].bundle.feature_names


def expected(app: Any, rows: list[list[float]]) -> list[Any]:
    answer = app.test_client().post("/predict", json=[dict(zip(names(app), row, strict=True)) for row in rows])
    assert answer.status_code == 200
    return answer.get_json()["predictions"]


def csv_text(rows: list[list[Any]], header: list[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(([header] if header else []) + rows)
    return buffer.getvalue()


def bodies(app: Any) -> dict[str, tuple[str, str | bytes]]:
    """Every body /invocations takes, each for the IRIS rows: (Content-Type, body)."""
    columns = names(app)
    records = [dict(zip(columns, row, strict=True)) for row in IRIS]
    return {
        "csv": ("text/csv", csv_text(IRIS)),
        "csv with a header in another order": ("text/csv", csv_text([row[::-1] for row in IRIS], columns[::-1])),
        "records": ("application/json", json.dumps(records)),
        "dataframe_split": ("application/json", json.dumps({"dataframe_split": {
            "columns": columns, "index": [7, 3, 1], "data": IRIS}})),
        "dataframe_records": ("application/json", json.dumps({"dataframe_records": records})),
        "instances as rows": ("application/json", json.dumps({"instances": IRIS})),
        "inputs as columns": ("application/json", json.dumps({"inputs": {c: [r[i] for r in IRIS]
                                                                         for i, c in enumerate(columns)}})),
        "instances with params": ("application/json", json.dumps({"instances": records, "params": {"x": 1}})),
        "json lines of records": ("application/jsonlines", "".join(json.dumps(r) + "\n" for r in records)),
        "json lines of rows": ("application/jsonlines", "".join(json.dumps(r) + "\n" for r in IRIS)),
        "pandas columns": ("application/json", json.dumps({c: {str(i): r[j] for i, r in enumerate(IRIS)}
                                                           for j, c in enumerate(columns)})),
    }


@pytest.mark.parametrize("shape", sorted(bodies(create_app({"MODEL_DIR": str(BUNDLES["iris"])}))))
def test_invocations_takes_every_shape_and_answers_as_predict(iris, shape):
    mimetype, body = bodies(iris)[shape]
    response = iris.test_client().post("/invocations", data=body, content_type=mimetype)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"predictions": expected(iris, IRIS)}


@pytest.mark.parametrize("accept,mimetype", [("text/csv", "text/csv"), ("application/jsonlines",
                                                                      "application/jsonlines"),
                                            ("application/json", "application/json"), ("*/*", "application/json"),
                                            ("text/csv;q=0.5, application/jsonlines", "application/jsonlines")])
def test_invocations_answers_in_what_accept_asks_for(app, accept, mimetype):
    rows = [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]] if len(names(app)) == 10 else IRIS
    response = app.test_client().post("/invocations", data=csv_text(rows), content_type="text/csv",
                                      headers={"Accept": accept})
    assert response.status_code == 200 and response.mimetype == mimetype
    text = response.data.decode()
    if mimetype == "text/csv":  # each value as Python writes it: it reads back as the same number
        assert [row[0] for row in csv.reader(io.StringIO(text))] == [str(v) for v in expected(app, rows)]
    elif mimetype == "application/jsonlines":
        assert [json.loads(line) for line in text.splitlines()] == expected(app, rows)
    else:
        assert json.loads(text) == {"predictions": expected(app, rows)}


@pytest.mark.parametrize("mimetype,body,status,code,message", [
    ("text/csv", "1,2\n", 422, "BAD_REQUEST", "CSV line 1: 2 values, the model takes 4"),
    ("text/csv", "5.1,3.5,abc,0.2\n", 422, "BAD_REQUEST", "feature 'petal_length' must be a finite number"),
    ("text/csv", "5.1,3.5,,0.2\n", 422, "BAD_REQUEST", "petal_length"),
    ("application/xml", "<x/>", 415, "BAD_REQUEST", "send application/json, text/csv or application/jsonlines"),
    ("application/json", '{"instances": [], "inputs": []}', 422, "BAD_REQUEST", "send one of dataframe_split"),
    ("application/json", '{"instances": [[1, 2]]}', 422, "BAD_REQUEST", "instances[0]: 2 values, the model takes 4"),
])
def test_invocations_errors_are_mlflow_shaped_one_liners(iris, mimetype, body, status, code, message):
    response = iris.test_client().post("/invocations", data=body, content_type=mimetype)
    assert response.status_code == status
    answer = response.get_json()
    assert answer["error_code"] == code and message in answer["message"], answer


def test_invocations_refuses_an_answer_type_it_cannot_give(iris):
    response = iris.test_client().post("/invocations", data=csv_text(IRIS), content_type="text/csv",
                                       headers={"Accept": "application/xml"})
    assert response.status_code == 406 and "application/xml" in response.get_json()["message"]


def test_invocations_limits_rows_before_typing_them(iris):
    response = iris.test_client().post("/invocations", data=csv_text(IRIS * 17), content_type="text/csv")
    assert response.status_code == 413 and "more than 50 rows" in response.get_json()["message"]


def test_health_version_and_execution_parameters(iris):
    client = iris.test_client()
    assert client.get("/ping").get_json() == {"status": "ready"} and client.get("/health").status_code == 200
    assert client.get("/version").data.decode() == __import__("service").__version__
    parameters = client.get("/execution-parameters").get_json()
    assert parameters["BatchStrategy"] == "MULTI_RECORD" and parameters["MaxPayloadInMB"] == 1
    assert client.get("/").get_json()["status"] == "alive"  # KServe V1's liveness


def test_kserve_v1(iris):
    client, name = iris.test_client(), iris.extensions[EXTENSION].bundle.card["name"]
    assert client.get("/v1/models").get_json() == {"models": [name]}
    assert client.get(f"/v1/models/{name}").get_json() == {"name": name, "ready": True}
    answer = client.post(f"/v1/models/{name}:predict", json={"instances": IRIS})
    assert answer.get_json() == {"predictions": expected(iris, IRIS)}
    records = [dict(zip(names(iris), row, strict=True)) for row in IRIS]
    assert client.post(f"/v1/models/{name}:predict", json={"instances": records}).get_json()["predictions"] == \
        expected(iris, IRIS)
    missing = client.post("/v1/models/other:predict", json={"instances": IRIS})
    assert missing.status_code == 404 and missing.get_json() == {
        "error": f"unknown model 'other': this server serves '{name}'"}


def test_vertex_routes_come_from_its_variables(monkeypatch):
    """Vertex AI names the routes (AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE) and the port (AIP_HTTP_PORT)."""
    route = "/v1/endpoints/123/deployedModels/456"
    monkeypatch.setenv("AIP_HTTP_PORT", "8085")
    monkeypatch.setenv("AIP_HEALTH_ROUTE", route)
    monkeypatch.setenv("AIP_PREDICT_ROUTE", f"{route}:predict")
    app = create_app({"MODEL_DIR": str(BUNDLES["iris"])})
    assert app.config["PORT"] == 8085 and app.config["PLATFORM"] == "vertex"
    assert app.config["MAX_BODY_BYTES"] == 1_572_864  # Vertex AI's 1.5 MB requests
    client = app.test_client()
    assert client.get(route).status_code == 200
    answer = client.post(f"{route}:predict", json={"instances": IRIS, "parameters": {"confidence": 0.5}})
    assert answer.get_json() == {"predictions": expected(app, IRIS)}


def test_vertex_may_name_predict_itself(monkeypatch):
    monkeypatch.setenv("AIP_PREDICT_ROUTE", "/predict")
    app = create_app({"MODEL_DIR": str(BUNDLES["iris"])})
    client = app.test_client()
    assert client.post("/predict", json={"instances": IRIS}).get_json() == {"predictions": expected(app, IRIS)}
    records = [dict(zip(names(app), row, strict=True)) for row in IRIS]
    assert client.post("/predict", json=records).get_json() == {"predictions": expected(app, IRIS)}


@pytest.mark.parametrize("environ,port,body,rows", [
    ({"SERVICE_PLATFORM": "sagemaker"}, 8080, 6 << 20, 100_000),
    ({"SERVICE_PLATFORM": "sagemaker", "SAGEMAKER_BIND_TO_PORT": "9001", "SERVICE_PORT": "8080"}, 9001, 6 << 20,
     100_000),
    ({"SERVICE_PLATFORM": "sagemaker", "SERVICE_MAX_BODY_BYTES": "1000"}, 8080, 1000, 100_000),
    ({"AIP_HTTP_PORT": "7070"}, 7070, 1_572_864, 100_000),
    ({"SAGEMAKER_BIND_TO_PORT": "9001"}, 8080, 1_048_576, 1000),  # only under `serve`
])
def test_platform_settings(environ, port, body, rows):
    settings = settings_from_env(environ)
    assert (settings["PORT"], settings["MAX_BODY_BYTES"], settings["MAX_ROWS"]) == (port, body, rows)


def test_an_unknown_platform_is_one_line():
    with pytest.raises(ConfigError, match="SERVICE_PLATFORM='azure' is not one of sagemaker, vertex"):
        settings_from_env({"SERVICE_PLATFORM": "azure"})


def test_serve_is_sagemakers_argument():
    assert parse(["serve"]).command == "serve" and parse([]).command is None
    with pytest.raises(SystemExit):
        parse(["train"])


def test_every_platform_route_is_in_the_openapi_document(iris):
    paths = iris.test_client().get("/openapi.json").get_json()["paths"]
    assert {"/ping", "/health", "/version", "/invocations", "/execution-parameters", "/v1/models",
            "/v1/models/{name}", "/v1/models/{name}:predict"} <= set(paths)
    assert platforms.ANSWERS == ("application/json", "text/csv", "application/jsonlines")


def test_json_lines_are_held_to_one_value_budget(iris):
    """Each line alone is small, but together they hold more values than 50 rows can need: 413 before parsing."""
    line = json.dumps([[1.0] * 4] * 40) + "\n"  # 160 values a line, 50 lines
    response = iris.test_client().post("/invocations", data=line * 50, content_type="application/jsonlines")
    assert response.status_code == 413 and response.get_json()["error_code"] == "BAD_REQUEST"
    assert "the body holds more than 604 values" in response.get_json()["message"]  # (50 + 8) x (4 + 2) + 256
