"""Bad input of every kind gets a 4xx in the one error envelope; nothing a client sends yields a 5xx."""
from __future__ import annotations

import json

import pytest

from service.state import EXTENSION


def good_record(app) -> dict[str, float]:
    return {f["name"]: f["min"] for f in app.extensions[EXTENSION].bundle.card["features"]}


def with_value(app, value):
    record = good_record(app)
    record[next(iter(record))] = value
    return json.dumps(record)


def first(app) -> str:
    return next(iter(good_record(app)))


# (id, body builder(app) -> str|bytes, status, code, field builder(app) -> str|None)
BAD_BODIES = [
    ("malformed", lambda a: '{"age": ', 400, "invalid_json", None),
    ("empty body", lambda a: "", 400, "invalid_json", None),
    ("not utf-8", lambda a: b'{"a": "\xff"}', 400, "invalid_json", None),
    ("duplicate key", lambda a: '{"x": 1, "x": 2}', 400, "invalid_json", lambda a: "x"),
    # refused before parsing (issue 29): each "[" is a value, more than 50 rows can need
    ("too deep", lambda a: "[" * 20_000 + "]" * 20_000, 413, "too_many_values", None),
    ("more values than rows need", lambda a: "[" + ",".join(["{}"] * 1_000) + "]", 413, "too_many_values", None),
    ("NaN", lambda a: with_value(a, float("nan")), 422, "not_finite", None),
    ("Infinity", lambda a: with_value(a, float("inf")), 422, "not_finite", None),
    ("-Infinity", lambda a: with_value(a, float("-inf")), 422, "not_finite", None),
    ("1e999", lambda a: with_value(a, 1).replace(": 1,", ": 1e999,", 1), 422, "not_finite", first),
    ("huge int", lambda a: with_value(a, 10 ** 400), 422, "not_finite", first),
    ("string", lambda a: with_value(a, "6.5"), 422, "not_a_number", first),
    ("bool", lambda a: with_value(a, True), 422, "not_a_number", first),
    ("null", lambda a: with_value(a, None), 422, "null_value", first),
    ("nested list", lambda a: with_value(a, [1]), 422, "nested_value", first),
    ("missing feature", lambda a: json.dumps({k: v for k, v in list(good_record(a).items())[1:]}),
     422, "missing_feature", first),
    ("unknown feature", lambda a: json.dumps({**good_record(a), "zzz": 1}), 422, "unknown_feature", lambda a: "zzz"),
    ("empty list", lambda a: "[]", 422, "empty_input", None),
    ("empty object", lambda a: "{}", 422, "empty_input", None),
    ("number", lambda a: "42", 422, "invalid_shape", None),
    ("string body", lambda a: '"hello"', 422, "invalid_shape", None),
    ("null body", lambda a: "null", 422, "invalid_shape", None),
    ("list of numbers", lambda a: "[1, 2]", 422, "invalid_record", None),
    ("mixed columns", lambda a: json.dumps({**{k: {"0": v} for k, v in good_record(a).items()}, first(a): 1}),
     422, "mixed_shape", first),
    ("ragged columns", lambda a: json.dumps({k: ({"0": v, "1": v} if i else {"0": v})
                                             for i, (k, v) in enumerate(good_record(a).items())}),
     422, "inconsistent_index", None),
    ("too many rows", lambda a: json.dumps([good_record(a)] * 51), 413, "too_many_rows", None),
]


@pytest.mark.parametrize("name,body,status,code,field", BAD_BODIES, ids=[row[0] for row in BAD_BODIES])
def test_bad_body_is_a_client_error(client, app, name, body, status, code, field):
    response = client.post("/predict", data=body(app), content_type="application/json",
                           headers={"X-Request-ID": "req-1"})
    payload = response.get_json()
    assert response.status_code == status, payload
    assert payload["error"]["code"] == code
    assert payload["request_id"] == "req-1"
    if field is not None:
        assert payload["error"]["field"] == field(app)
        assert field(app) in payload["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("method,path,headers,data,status,code", [
    ("GET", "/nope", {}, None, 404, "not_found"),
    ("DELETE", "/predict", {}, None, 405, "method_not_allowed"),
    ("GET", "/predict", {}, None, 405, "method_not_allowed"),
    ("POST", "/metadata", {}, None, 405, "method_not_allowed"),
    ("POST", "/predict", {"Content-Type": "text/plain"}, "{}", 415, "unsupported_media_type"),
    ("POST", "/predict", {}, "{}", 415, "unsupported_media_type"),
    ("POST", "/predict", {"Content-Type": "application/json"}, "x" * (64 * 1024 + 1), 413, "body_too_large"),
])
def test_http_errors_use_the_envelope(client, method, path, headers, data, status, code):
    response = client.open(path, method=method, headers=headers, data=data)
    payload = response.get_json()
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]
    assert payload["request_id"] == response.headers["X-Request-ID"]


def test_unexpected_failure_is_a_500_envelope_without_traceback(client, service, monkeypatch):
    def explode(rows):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(service.predictor, "predict", explode)
    response = client.post("/predict", json=good_record(client.application))
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_values_the_estimator_refuses_are_a_422_not_a_500():
    """Found by schemathesis: 1e300 is finite, but overflows the gradient boosting's float32 cast."""
    from service.app import create_app
    from .conftest import BUNDLES
    app = create_app({"MODEL_DIR": str(BUNDLES["diabetes"])})
    response = app.test_client().post("/predict", data=with_value(app, 1e300), content_type="application/json")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "rejected_by_model" and "too large for dtype('float32')" in error["message"]


def test_a_non_finite_answer_is_never_sent(client, service, monkeypatch):
    """Checked as arrays where the answer is numeric, value by value where predictions are labels of any type."""
    import numpy as np
    first = service.bundle.classes[0] if service.bundle.is_classifier else 1.0
    cases = {"predictions": (np.array([np.inf]), 1 / 3), "labels": (np.array([np.nan, "a"], dtype=object)[:1], 1 / 3)}
    if service.bundle.is_classifier:
        cases["probabilities"] = (np.array([first]), np.nan)
    monkeypatch.setattr(service.predictor, "fast", None)  # the model itself answers
    for where, (predicted, probability) in cases.items():
        monkeypatch.setattr(service.bundle.model, "predict", lambda matrix, answer=predicted: answer)
        monkeypatch.setattr(service.bundle.model, "predict_proba",
                            lambda matrix, p=probability: np.full((len(matrix), 3), p), raising=False)
        response = client.post("/predict", data=with_value(client.application, 1), content_type="application/json")
        assert response.status_code == 422, (where, response.get_json())
        assert response.get_json()["error"]["code"] == "rejected_by_model", where
        assert "NaN" not in response.get_data(as_text=True) and "Infinity" not in response.get_data(as_text=True)


def value_by_value(records, features):
    """The reference: every record checked feature by feature (`_row`), as rows or the first error."""
    from service.errors import CLIENT_ERRORS, as_api_error
    from service.inputs import _row
    try:
        return [_row(record, features, f"record {position}") for position, record in enumerate(records)]
    except CLIENT_ERRORS as exc:
        error = as_api_error(exc)
        return (error.status, error.code, error.message, error.field)


@pytest.mark.parametrize("value", [0.25, 3, -0.0, 2**64 + 1, 1e308, 10**400, True, None, "1.5", [1]], ids=repr)
@pytest.mark.parametrize("change", ["value", "extra key", "missing key", "not an object"])
def test_records_read_at_once_are_read_as_value_by_value(service, value, change):
    """Records of plain numbers are read in one pass (`_plain_records`, then `plain_rows`: lists, or for a model
    that takes an array, its array): the same rows, or the same error, as the check of each value."""
    import numpy as np
    from service.errors import CLIENT_ERRORS, as_api_error
    from service.inputs import parse_rows
    features = service.bundle.features
    records = [{f.name: 0.5 * i for f in features} for i in range(3)]
    name = features[0].name
    records[1] = {"value": {**records[1], name: value}, "extra key": {**records[1], "zzz": value},
                  "missing key": {k: v for k, v in records[1].items() if k != name},
                  "not an object": [value]}[change]
    expected = value_by_value(records, features)
    for array_model in (False, True):
        try:
            values = parse_rows(records, features, 50, array_model).values
        except CLIENT_ERRORS as exc:
            error = as_api_error(exc)
            assert (error.status, error.code, error.message, error.field) == expected, array_model
            continue
        assert not isinstance(expected, tuple), (array_model, expected)
        if isinstance(values, np.ndarray):
            assert array_model and values.dtype == np.float64
            assert values.tolist() == expected
        else:
            assert values == expected and all(type(v) is type(e) for row, want in zip(values, expected, strict=True)
                                               for v, e in zip(row, want, strict=True))


def test_commas_inside_text_do_not_count_as_values(client, app):
    """The value count before parsing is exact when it matters: commas within strings are not values."""
    record = {**good_record(app), "note": "," * 5_000}
    response = client.post("/predict", data=json.dumps(record), content_type="application/json")
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "unknown_feature"


def test_binary_tensors_count_their_elements_before_decoding(client, app):
    features = app.extensions[EXTENSION].bundle.card["features"]
    header = json.dumps({"inputs": [{"name": features[0]["name"], "shape": [20_000], "datatype": "BOOL",
                                     "parameters": {"binary_data_size": 20_000}}]}).encode()
    name = app.extensions[EXTENSION].bundle.card["name"]
    response = client.post(f"/v2/models/{name}/infer", data=header + bytes(20_000),
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 413 and "more than" in response.get_json()["error"]
