"""`service/fastroute.py`: POST /predict answered in front of Flask gives, for every request of a table (valid
bodies in each shape, every client error /predict can answer, an unexpected failure), the same status, headers
and bytes as Flask's own view, counts and logs it the same way, and leaves every other request to Flask."""
from __future__ import annotations

import gzip
import io
import json
import logging
from typing import Any

import pytest
from werkzeug.test import Client, create_environ, run_wsgi_app

from service.app import create_app
from service.fastroute import FastRoutes, read_body
from service.state import EXTENSION

from .conftest import BUNDLES

ROW = {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101, "s1": 157, "s2": 93.2, "s3": 38, "s4": 4, "s5": 4.8598, "s6": 87}
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
LIMITS = {"MAX_ROWS": 50, "MAX_BODY_BYTES": 64 * 1024}
JSON = "application/json"


def diabetes(body: Any) -> bytes:
    return json.dumps(body).encode()


BODIES: dict[str, bytes] = {
    "one record": diabetes(ROW),
    "records": diabetes([ROW, {**ROW, "age": 20}, {**ROW, "bmi": 18.5}]),
    "columns": diabetes({key: {"7": value, "3": value} for key, value in ROW.items()}),
    "split": diabetes({"columns": list(ROW), "index": [7, "b"], "data": [list(ROW.values())] * 2}),
    "fifty rows": diabetes([ROW] * 50),
    "missing feature": diabetes({k: v for k, v in ROW.items() if k != "bmi"}),
    "unknown feature": diabetes({**ROW, "colour": 1}),
    "text for a number": diabetes({**ROW, "age": "old"}),
    "null for a number": diabetes({**ROW, "age": None}),
    "boolean for a number": diabetes({**ROW, "sex": True}),
    "NaN token": json.dumps(ROW).replace("59", "NaN").encode(),
    "duplicate key": b'{"age": 59, "age": 60}',
    "malformed": b'{"age": ',
    "empty": b"",
    "blank": b"   ",
    "not UTF-8": b'{"age": "\xff"}',
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "too many rows": diabetes([ROW] * 51),
    "too many values": b"[" + b"1," * 20_000 + b"1]",
    "a list of numbers": diabetes([1, 2, 3]),
    "a number": b"42",
    "an empty record": b"{}",
    "an empty list": b"[]",
    "beyond float32": diabetes({**ROW, "bmi": 1e300}),
}


@pytest.fixture(scope="module")
def apps() -> dict[str, Any]:
    return {name: create_app({"MODEL_DIR": str(folder), **LIMITS}) for name, folder in BUNDLES.items()}


def both(app: Any, body: bytes, content_type: str = JSON, delegated: bool = False, path: str = "/predict",
         headers: dict[str, str] | None = None) -> tuple[Any, Any]:
    """The answer of the fast route (which must answer it itself unless `delegated`) and of Flask's own view to
    the same request."""
    route = app.wsgi_app
    assert isinstance(route, FastRoutes)

    def not_flask(environ: dict[str, Any], start_response: Any) -> Any:
        raise AssertionError("the fast route handed the request to Flask")

    fast = FastRoutes(app, route.flask_app if delegated else not_flask, route.routes)
    headers = {"X-Request-ID": "fixed-id-for-both", **(headers or {})}
    answers = [Client(wsgi).post(path, data=body, headers=headers, content_type=content_type)
               for wsgi in (fast, route.flask_app)]
    return answers[0], answers[1]


def same(fast: Any, flask: Any) -> None:
    assert (fast.status, fast.headers.to_wsgi_list(), fast.data) == (flask.status, flask.headers.to_wsgi_list(),
                                                                    flask.data)


@pytest.mark.parametrize("name", BODIES)
def test_each_body_gets_the_same_status_headers_and_bytes_as_flasks_view(apps, name):
    # no length, and over the body limit: Flask's
    fast, flask = both(apps["diabetes"], BODIES[name], delegated=name in ("empty", "nested too deep"))
    same(fast, flask)
    if name in ("one record", "records", "columns", "split", "fifty rows"):
        assert fast.status_code == 200
    else:
        assert fast.status_code in (400, 413, 422), fast.data


V1 = "/v1/models/diabetes-progression:predict"
ENVELOPES: dict[str, tuple[str, bytes]] = {
    "MLflow dataframe_split": ("/invocations", diabetes({"dataframe_split": {"columns": list(ROW),
                                                                            "data": [list(ROW.values())] * 3}})),
    "MLflow dataframe_records": ("/invocations", diabetes({"dataframe_records": [ROW, ROW]})),
    "MLflow instances": ("/invocations", diabetes({"instances": [ROW]})),
    "MLflow inputs as rows": ("/invocations", diabetes({"inputs": [list(ROW.values())]})),
    "MLflow inputs as columns": ("/invocations", diabetes({"inputs": {k: [v, v] for k, v in ROW.items()}})),
    "MLflow with params": ("/invocations", diabetes({"instances": [ROW], "params": {"a": 1}})),
    "a bare record": ("/invocations", diabetes(ROW)),
    "rows of arrays": ("/invocations", diabetes([list(ROW.values())] * 2)),
    "two keys": ("/invocations", diabetes({"instances": [ROW], "inputs": [ROW]})),
    "a row too short": ("/invocations", diabetes({"instances": [[1, 2]]})),
    "a missing feature": ("/invocations", diabetes({"instances": [{"age": 1}]})),
    "malformed": ("/invocations", b'{"instances": ['),
    "V1 instances": (V1, diabetes({"instances": [ROW, {**ROW, "age": 30}]})),
    "V1 rows of arrays": (V1, diabetes({"instances": [list(ROW.values())]})),
    "V1 with parameters": (V1, diabetes({"instances": [ROW], "parameters": {}})),
    "V1 a text value": (V1, diabetes({"instances": [{**ROW, "age": "x"}]})),
    "V1 too many rows": (V1, diabetes({"instances": [ROW] * 51})),
    "V1 duplicate key": (V1, b'{"instances": [], "instances": []}'),
}


@pytest.mark.parametrize("name", ENVELOPES)
def test_the_platform_routes_answer_as_their_flask_views(apps, name):
    path, body = ENVELOPES[name]
    fast, flask = both(apps["diabetes"], body, path=path)
    same(fast, flask)
    assert fast.status_code in (200, 400, 413, 422)


V2 = "/v2/models/diabetes-progression/infer"
V2_VERSION = "/v2/models/diabetes-progression/versions/1.0.0/infer"


def matrix(rows: list[list[Any]], **extra: Any) -> bytes:
    """A V2 request of one [N, 10] FP64 tensor, its data flat."""
    flat = [value for row in rows for value in row]
    return json.dumps({"inputs": [{"name": "input-0", "shape": [len(rows), 10], "datatype": "FP64", "data": flat}],
                       **extra}).encode()


def columns(**changed: Any) -> bytes:
    """A V2 request of one tensor per feature."""
    return json.dumps({"inputs": [{"name": name, "shape": [2], "datatype": "FP64", "data": changed.get(name, [v, v])}
                                  for name, v in ROW.items()]}).encode()


VALUES = list(ROW.values())
TENSORS: dict[str, tuple[str, bytes]] = {
    "one row": (V2, matrix([VALUES])),
    "a thousand rows": (V2, matrix([VALUES] * 1000)),  # over the suite's MAX_ROWS of 50: its 413
    "fifty rows, the version's path": (V2_VERSION, matrix([VALUES] * 50)),
    "nested data": (V2, json.dumps({"inputs": [{"name": "x", "shape": [2, 10], "datatype": "FP64",
                                               "data": [VALUES, VALUES]}]}).encode()),
    "integers": (V2, matrix([[int(v) for v in VALUES]])),
    "a tensor per feature": (V2, columns()),
    "an id and the outputs named": (V2, matrix([VALUES], id="mine", outputs=[{"name": "predict"}])),
    "an output not served": (V2, matrix([VALUES], outputs=[{"name": "predict_proba"}])),
    "a boolean value": (V2, matrix([[True, *VALUES[1:]]])),
    "a null value": (V2, matrix([[None, *VALUES[1:]]])),
    "text in a number tensor": (V2, matrix([["old", *VALUES[1:]]])),
    "beyond float32": (V2, matrix([[1e300, *VALUES[1:]]])),
    "beyond float64 as an integer": (V2, matrix([[10 ** 400, *VALUES[1:]]])),
    "no rows": (V2, json.dumps({"inputs": [{"name": "x", "shape": [0, 10], "datatype": "FP64",
                                           "data": []}]}).encode()),
    "too many rows": (V2, matrix([VALUES] * 51)),
    "nine columns": (V2, json.dumps({"inputs": [{"name": "x", "shape": [1, 9], "datatype": "FP64",
                                                "data": VALUES[:9]}]}).encode()),
    "a shape that does not fit": (V2, json.dumps({"inputs": [{"name": "x", "shape": [2, 10], "datatype": "FP64",
                                                             "data": VALUES}]}).encode()),
    "a text tensor for a number": (V2, columns(age=["a", "b"])),
    "tensors of different lengths": (V2, columns(age=[1.0])),
    "no inputs": (V2, b'{"inputs": []}'),
    "not an object": (V2, b"[1, 2]"),
    "duplicate key": (V2, b'{"inputs": [], "inputs": []}'),
    "malformed": (V2, b'{"inputs": ['),
}


@pytest.mark.parametrize("name", TENSORS)
def test_v2_infer_answers_as_its_flask_view(apps, name, caplog):
    path, body = TENSORS[name]
    with caplog.at_level(logging.INFO, logger="service.access"):
        fast, flask = both(apps["diabetes"], body, path=path)
    same(fast, flask)
    lines = [(r.status, r.rows) for r in caplog.records if r.name == "service.access"]
    assert lines[0] == lines[1], lines
    if name in ("one row", "fifty rows, the version's path", "nested data", "integers", "a tensor per feature",
                "an id and the outputs named"):
        assert fast.status_code == 200, fast.data
    else:
        assert fast.status_code in (400, 413, 422), fast.data


def test_v2_probabilities_are_answered_alike(apps):
    names = list(IRIS)
    body = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                                   "data": [*IRIS.values(), 6.0, 3.0, 5.0, 1.8]}], "id": "r"}).encode()
    fast, flask = both(apps["iris"], body, path="/v2/models/iris-species/infer")
    same(fast, flask)
    assert [o["name"] for o in fast.get_json()["outputs"]] == ["predict", "predict_proba"] and len(names) == 4


@pytest.mark.parametrize("content_type", ["", JSON])
@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_the_platform_routes_take_json_without_a_type_and_answer_json_as_asked(apps, content_type, accept):
    for path in ("/invocations", V1):
        fast, flask = both(apps["diabetes"], diabetes({"instances": [ROW]}), content_type=content_type, path=path,
                           headers={"Accept": accept} if accept else {})
        same(fast, flask)
        assert fast.status_code == 200 and len(fast.get_json()["predictions"]) == 1


def test_probabilities_and_a_charset_are_answered_alike(apps):
    for content_type in (JSON, "application/json; charset=utf-8", "application/json;charset=UTF-8"):
        fast, flask = both(apps["iris"], json.dumps([IRIS, {**IRIS, "petal_length": 5.0}]).encode(),
                           content_type=content_type)
        same(fast, flask)
        assert "probabilities" in fast.get_json()


def test_a_request_id_is_made_when_none_or_an_unfit_one_is_sent(apps):
    route = apps["diabetes"].wsgi_app
    for headers in ({}, {"X-Request-ID": "x" * 500}, {"X-Request-ID": "bad id\x7f"}):
        answer = Client(route).post("/predict", data=BODIES["one record"], headers=headers, content_type=JSON)
        assert answer.status_code == 200
        assert len(answer.headers["X-Request-ID"]) == 32 and answer.headers["X-Request-ID"] != "x" * 500


def test_an_unexpected_failure_is_a_logged_500_as_in_flask(apps, monkeypatch, caplog):
    service = apps["diabetes"].extensions[EXTENSION]

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service.predictor, "predict", broken)
    with caplog.at_level(logging.ERROR):
        fast, flask = both(apps["diabetes"], BODIES["one record"])
    same(fast, flask)
    assert fast.status_code == 500 and b"a bug" not in fast.data
    failures = [r for r in caplog.records if r.getMessage().startswith("unhandled error on POST /predict")]
    assert len(failures) == 2 and all(r.exc_info and "a bug" in str(r.exc_info[1]) for r in failures)


@pytest.mark.parametrize("how", ["outputs asked", "gzip", "text/plain", "GET", "another version", "no length", "CSV",
                                 "Accept CSV", "another model", "V2 binary output asked", "V2 binary tensors"])
def test_what_the_route_does_not_take_goes_to_flask(apps, monkeypatch, how):
    route = apps["diabetes"].wsgi_app
    passed = []
    original = route.flask_app
    monkeypatch.setattr(route, "flask_app", lambda environ, start: passed.append(1) or original(environ, start))
    client, body = Client(route), BODIES["one record"]
    if how == "outputs asked":
        answer = client.post("/predict?outputs=predict", data=body, content_type=JSON)
    elif how == "gzip":
        answer = client.post("/predict", data=gzip.compress(body), content_type=JSON,
                             headers={"Content-Encoding": "gzip"})
    elif how == "text/plain":
        answer = client.post("/predict", data=body, content_type="text/plain")
    elif how == "GET":
        answer = client.get("/predict")
    elif how == "another version":
        answer = client.post("/v2/models/diabetes-progression/versions/9/infer", data=matrix([list(ROW.values())]),
                             content_type=JSON)
    elif how == "V2 binary output asked":
        answer = client.post("/v2/models/diabetes-progression/infer", content_type=JSON,
                             data=matrix([list(ROW.values())], parameters={"binary_data_output": True}))
        assert answer.headers["Content-Type"] == "application/octet-stream"
    elif how == "V2 binary tensors":
        header = matrix([list(ROW.values())])
        answer = client.post("/v2/models/diabetes-progression/infer", data=header, content_type=JSON,
                             headers={"Inference-Header-Content-Length": str(len(header))})
    elif how == "CSV":
        answer = client.post("/invocations", data=",".join(map(str, ROW.values())), content_type="text/csv")
    elif how == "Accept CSV":
        answer = client.post("/invocations", data=body, content_type=JSON, headers={"Accept": "text/csv"})
    elif how == "another model":
        answer = client.post("/v1/models/other:predict", data=diabetes({"instances": [ROW]}), content_type=JSON)
    else:  # a chunked body as a server hands it on: no CONTENT_LENGTH, the input marked as terminated
        environ = create_environ("/predict", method="POST", data=body, content_type=JSON)
        del environ["CONTENT_LENGTH"]
        environ["wsgi.input_terminated"] = True
        output, status, _ = run_wsgi_app(route, environ, buffered=True)
        answer = type("Answer", (), {"status_code": int(status.split()[0]), "data": b"".join(output)})
    assert passed == [1]
    assert answer.status_code == {"text/plain": 415, "GET": 405, "another version": 404,
                                  "another model": 404}.get(how, 200), answer.data


def test_a_body_over_the_limit_goes_to_flask_for_its_413(apps):
    fast, flask = both(apps["diabetes"], b"[" + b" " * (64 * 1024) + b"]", delegated=True)
    same(fast, flask)
    assert fast.status_code == 413


def metric(app: Any, line: str) -> float:
    text = Client(app).get("/metrics").get_data(as_text=True)
    found = [row for row in text.splitlines() if row.startswith(line + " ")]
    return float(found[0].split()[-1]) if found else 0.0


def test_it_counts_and_logs_each_request_as_flasks_hooks_do(apps, caplog):
    app = apps["diabetes"]
    route = app.wsgi_app
    series = ['http_requests_total{endpoint="/predict",method="POST",status="200"}',
              'http_requests_total{endpoint="/predict",method="POST",status="422"}',
              'predicted_rows_total{endpoint="/predict"}',
              'http_request_duration_seconds_count{endpoint="/predict",method="POST",status="200"}',
              "http_requests_in_flight"]
    counted = []
    with caplog.at_level(logging.INFO, logger="service.access"):
        for wsgi in (route, route.flask_app):
            before = [metric(app, line) for line in series]
            for body in (BODIES["records"], BODIES["missing feature"], BODIES["one record"], BODIES["beyond float32"]):
                Client(wsgi).post("/predict", data=body, content_type=JSON, headers={"X-Request-ID": "same-id"})
            counted.append([metric(app, line) - value for line, value in zip(series, before, strict=True)])
    assert counted[0] == counted[1] == [2, 2, 4, 2, 0]
    lines = [{k: getattr(r, k) for k in ("method", "path", "status", "rows", "request_id", "levelname")}
             for r in caplog.records if r.name == "service.access" and r.path == "/predict"]
    assert lines[:4] == lines[4:]
    assert [(line["status"], line["rows"]) for line in lines[:4]] == [(200, 3), (422, None), (200, 1), (422, 1)]


@pytest.mark.parametrize("path, rule", [(V2, "/v2/models/<name>/infer"),
                                        (V2_VERSION, "/v2/models/<name>/versions/<version>/infer")])
def test_v2_infer_is_counted_under_flasks_rule(apps, path, rule):
    app = apps["diabetes"]
    route = app.wsgi_app
    series = [f'http_requests_total{{endpoint="{rule}",method="POST",status="200"}}',
              f'http_requests_total{{endpoint="{rule}",method="POST",status="422"}}',
              f'predicted_rows_total{{endpoint="{rule}"}}']
    counted = []
    for wsgi in (route, route.flask_app):
        before = [metric(app, line) for line in series]
        for body in (matrix([VALUES] * 3), matrix([[True, *VALUES[1:]]])):
            Client(wsgi).post(path, data=body, content_type=JSON)
        counted.append([metric(app, line) - value for line, value in zip(series, before, strict=True)])
    assert counted[0] == counted[1] == [1, 1, 3]


def test_the_body_is_taken_from_wsgi_input_without_a_copy():
    """A 1 MiB body in flight costs one MiB, not two (docs/operations.md: memory); any other stream is read."""
    body = b"[" + b",".join([b"1.5"] * 1000) + b"]"
    stream = io.BytesIO()
    stream.write(body)
    stream.seek(0)
    assert read_body(stream, len(body)) is stream.getvalue()
    assert read_body(stream, 10) == body[:10] and stream.tell() == 10
    moved = io.BytesIO(body)
    moved.seek(3)
    assert read_body(moved, 5) == body[3:8]
    assert read_body(io.BufferedReader(io.BytesIO(body)), len(body)) == body
