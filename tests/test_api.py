"""Every endpoint and input shape, against both bundles (the `app` fixture is parametrized)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from service.app import create_app
from service.state import EXTENSION

from .conftest import BUNDLES


def records_for(service, count: int = 3) -> list[dict[str, float]]:
    """Distinct records spread over each feature's training range."""
    features = service.bundle.card["features"]
    return [{f["name"]: f["min"] + (i + 1) / (count + 1) * (f["max"] - f["min"]) for f in features}
            for i in range(count)]


def direct(service, records):
    matrix = np.array([[r[name] for name in service.bundle.feature_names] for r in records])
    return service.bundle.model.predict(matrix).tolist()


def test_index_lists_every_endpoint_and_each_answers(client):
    body = client.get("/").get_json()
    assert body["model"]["name"]
    for endpoint in body["endpoints"]:
        path = endpoint["path"].replace("{name}", body["model"]["name"]).replace("[/versions/{version}]", "")
        if endpoint["method"] == "GET":
            assert client.get(path).status_code == 200, endpoint
    assert {e["path"] for e in body["endpoints"]} >= {"/predict", "/example", "/metadata", "/health/ready"}


def test_one_record_matches_direct_predict(client, service):
    record = records_for(service, 1)[0]
    response = client.post("/predict", json=record)
    assert response.status_code == 200
    assert response.get_json()["predictions"] == direct(service, [record])


def test_list_of_records_answers_in_input_order(client, service):
    records = records_for(service, 3)
    forward = client.post("/predict", json=records).get_json()["predictions"]
    backward = client.post("/predict", json=records[::-1]).get_json()["predictions"]
    assert forward == direct(service, records)
    assert backward == forward[::-1]


def test_pandas_columns_keep_the_order_sent_and_name_each_rows_label(client, service):
    """DataFrame.to_json() of a shuffled frame: the answers come back in the order sent, each with its label
    (sorting by label would put every prediction on the wrong row of the user's frame)."""
    import pandas as pd
    records = records_for(service, 3)
    frame = pd.DataFrame(records, index=[10, 2, 0])
    body = client.post("/predict", data=frame.to_json(), content_type="application/json").get_json()
    assert body["index"] == ["10", "2", "0"]
    assert body["predictions"] == direct(service, records)
    frame["predicted"] = pd.Series(body["predictions"], index=[int(label) for label in body["index"]])
    assert frame["predicted"].tolist() == direct(service, records)


def test_pandas_split_orientation_is_accepted(client, service):
    import pandas as pd
    records = records_for(service, 2)
    frame = pd.DataFrame(records, index=["b", "a"])
    body = client.post("/predict", data=frame.to_json(orient="split"), content_type="application/json").get_json()
    assert body["index"] == ["b", "a"] and body["predictions"] == direct(service, records)
    broken = client.post("/predict", json={"columns": list(records[0]), "data": [[1.0]]}).get_json()
    assert broken["error"]["code"] == "invalid_shape" and "rows of" in broken["error"]["message"]


def test_compressed_bodies_are_inflated_within_the_limit(client, app, service):
    import gzip
    import zlib
    records = records_for(service, 3)
    raw = json.dumps(records).encode()
    for encoding, data in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        response = client.post("/predict", data=data, headers={"Content-Encoding": encoding},
                               content_type="application/json")
        assert response.get_json()["predictions"] == direct(service, records), encoding
    bomb = gzip.compress(b" " * (app.config["MAX_BODY_BYTES"] + 1) + raw)  # a few kB that inflate past the cap
    response = client.post("/predict", data=bomb, headers={"Content-Encoding": "gzip"},
                           content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "body_too_large"
    assert len(bomb) < 10_000
    bad = client.post("/predict", data=b"not gzip", headers={"Content-Encoding": "gzip"},
                      content_type="application/json")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_encoding"
    odd = client.post("/predict", data=raw, headers={"Content-Encoding": "br"}, content_type="application/json")
    assert odd.status_code == 415


def test_different_inputs_give_different_answers(client, service):
    body = client.post("/predict", json=records_for(service, 3)).get_json()
    answers = zip(body["predictions"], body.get("probabilities", [None] * 3), strict=True)
    assert len({json.dumps(answer, sort_keys=True) for answer in answers}) == 3


def test_classifier_answers_labels_and_probabilities():
    app = create_app({"MODEL_DIR": str(BUNDLES["iris"])})
    service, client = app.extensions[EXTENSION], app.test_client()
    records = records_for(service, 3)
    body = client.post("/predict", json=records).get_json()
    labels = service.bundle.card["output"]["labels"]
    assert body["predictions"] == direct(service, records)
    assert len(set(body["predictions"])) > 1
    matrix = np.array([[r[n] for n in service.bundle.feature_names] for r in records])
    expected = service.bundle.model.predict_proba(matrix)
    for row, probabilities, prediction in zip(expected, body["probabilities"], body["predictions"], strict=True):
        assert list(probabilities) == labels
        assert [probabilities[label] for label in labels] == row.tolist()
        assert math.isclose(sum(probabilities.values()), 1.0)
        assert max(probabilities, key=probabilities.get) == prediction


@pytest.mark.parametrize("path", ["/example", "/examples"])
def test_each_example_is_answered_exactly_as_stated(client, path):
    body = client.get(path).get_json()
    assert {e["name"] for e in body["examples"]} == {"record", "records", "columns"}
    for example in body["examples"]:
        response = client.post("/predict", json=example["request"])
        assert response.status_code == 200
        assert response.get_json() == example["response"], example["name"]
        assert example["curl"].startswith("curl -s -X POST http://localhost/predict ")


def test_examples_come_from_the_live_model(client, service):
    example = client.get("/example").get_json()["examples"][0]
    assert example["response"]["predictions"] == direct(service, [example["request"]])


def test_metadata_joins_the_card_and_the_loaded_model(client, service):
    body = client.get("/metadata").get_json()
    card = service.bundle.card
    assert body["card"] == card
    for key in ("title", "version", "description", "dataset", "features", "output", "metrics"):
        assert body["card"][key]
    model = body["model"]
    assert model["feature_order"] == [f["name"] for f in card["features"]]
    assert len(model["feature_order"]) == service.bundle.model.n_features_in_
    assert model["sha256"] == card["artifact"]["sha256"]
    assert model["estimator"] in {"GradientBoostingRegressor", "LogisticRegression"}
    assert model["parameters"]["random_state"] == 7
    assert model["classes"] == (card["output"]["labels"] if service.bundle.is_classifier else None)
    assert body["runtime"]["scikit_learn"] == card["sklearn_version"]
    assert body["runtime"]["service_version"]


def test_health_live_and_ready(client, service):
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200
    service.ready.clear()
    try:
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/live").status_code == 200
    finally:
        service.ready.set()


def test_request_id_is_echoed_or_generated(client):
    mine = client.get("/", headers={"X-Request-ID": "abc-123"})
    assert mine.headers["X-Request-ID"] == "abc-123"
    hostile = client.get("/", headers={"X-Request-ID": "bad id\u00e9"})
    assert hostile.headers["X-Request-ID"] != "bad id\u00e9" and len(hostile.headers["X-Request-ID"]) == 32
    assert mine.headers["X-Content-Type-Options"] == "nosniff"
