"""Cards derived from the models users bring, and the service answering them exactly as model.predict does in the
training environment: text, booleans, integers and nulls in, DataFrames with the fitted dtypes to the model."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest

from service.app import create_app
from derivecard.derive import DeriveError, bundle, derive_card
from service.state import EXTENSION

from .byo_models import KINDS
from .conftest import ROOT

@pytest.fixture(scope="session")
def bundles(trained, tmp_path_factory) -> dict[str, Path]:
    """Each model dumped with joblib and derived with its sample, as the build's builder stage does."""
    made = {}
    for kind, item in trained.items():
        folder = tmp_path_factory.mktemp(kind)
        joblib.dump(item.model, folder / f"{kind}.joblib")
        item.sample.to_csv(folder / "sample.csv", index=False)
        bundle(folder / f"{kind}.joblib", folder / "bundle", folder / "sample.csv")
        made[kind] = folder / "bundle"
    return made


@pytest.fixture(scope="session")
def apps(bundles):
    return {kind: create_app({"MODEL_DIR": str(path)}) for kind, path in bundles.items()}


def body_of(rows, names: list[str]) -> str:
    """What a user sends: DataFrame.to_json(orient="records") (NaN becomes null), or records of an array."""
    if isinstance(rows, np.ndarray):
        return json.dumps([dict(zip(names, map(float, row), strict=True)) for row in rows])
    return rows.to_json(orient="records")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_answers_equal_model_predict_bit_for_bit(apps, trained, kind):
    app, item = apps[kind], trained[kind]
    names = app.extensions[EXTENSION].bundle.feature_names
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = app.test_client().post("/predict", data=body_of(item.rows, names), content_type="application/json")
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["predictions"] == item.model.predict(item.rows).tolist()
    if hasattr(item.model, "predict_proba"):
        labels = [str(label) for label in item.model.classes_]
        assert [[row[label] for label in labels] for row in answer["probabilities"]] == \
            item.model.predict_proba(item.rows).tolist()
    assert not [w for w in caught if "feature names" in str(w.message)]


def test_the_rows_hold_text_and_nulls(trained):
    rows = trained["forest"].rows
    assert rows["city"].isna().any() and rows["area"].isna().any() and rows["garden"].dtype == bool


def feature(app, name: str) -> dict:
    return next(f for f in app.extensions[EXTENSION].bundle.card["features"] if f["name"] == name)


def test_forest_card(apps):
    card = apps["forest"].extensions[EXTENSION].bundle.card
    assert card["input"] == "dataframe" and card["task"] == "regression"
    assert feature(apps["forest"], "city") == {
        "name": "city", "type": "string", "values": ["lyon", "nantes", "paris", "toulouse"], "nullable": True,
        "null_as": "NaN", "dtype": "str", "closed": True}  # the imputer's missing_values, the encoder's categories
    assert feature(apps["forest"], "rooms")["type"] == "integer" and feature(apps["forest"], "garden")["type"] == "boolean"
    assert len(card["examples"]) == 2 and any(v is None for v in card["examples"][1].values())


def test_boosting_card_has_the_categories_not_their_codes(apps):
    city = feature(apps["boosting"], "city")
    assert city["type"] == "category" and city["dtype"] == "category"
    assert city["values"] == ["lyon", "nantes", "paris", "toulouse"] and city["closed"] is False
    examples = apps["boosting"].test_client().get("/example").get_json()["examples"]
    assert all(isinstance(e["request"]["city"], (str, type(None))) for e in examples[:1])


def test_linear_card_takes_its_names_from_the_sample(apps):
    card = apps["linear"].extensions[EXTENSION].bundle.card
    assert card["input"] == "array" and [f["name"] for f in card["features"]][:3] == ["age", "sex", "bmi"]
    assert all(f["type"] == "number" and "min" in f for f in card["features"])


def test_without_a_sample_names_are_x0_to_xn(trained, tmp_path):
    joblib.dump(trained["linear"].model, tmp_path / "linear.joblib")
    card = derive_card(tmp_path / "linear.joblib")
    assert [f["name"] for f in card["features"]] == [f"x{i}" for i in range(10)]
    assert any("x0..x9" in note for note in card["notes"]) and any("no --sample" in n for n in card["notes"])
    app = create_app({"MODEL_DIR": str(bundle(tmp_path / "linear.joblib", tmp_path / "b") and tmp_path / "b")})
    assert app.test_client().post("/predict", json={f"x{i}": 1.0 for i in range(10)}).status_code == 200


# pandas deprecates turning a value outside a categorical dtype into NaN by astype (the reference, below)
@pytest.mark.filterwarnings("ignore:Constructing a Categorical with a dtype and values containing")
@pytest.mark.parametrize("kind,record_change,status,code", [
    ("forest", {"city": "marseille"}, 422, "unknown_category"),
    ("forest", {"city": 3}, 422, "not_a_string"),
    ("forest", {"rooms": 2.5}, 422, "not_an_integer"),
    ("forest", {"rooms": None}, 422, "null_value"),
    ("forest", {"garden": "yes"}, 422, "not_a_boolean"),
    ("forest", {"area": "big"}, 422, "not_a_number"),
    ("forest", {"city": None, "area": None}, 200, None),
    ("boosting", {"city": "marseille"}, 200, None),  # the model treats an unknown category as missing
    ("lightgbm", {"city": "marseille"}, 200, None),
    ("lightgbm", {"city": None, "area": None}, 200, None),
])
def test_typed_values(apps, trained, kind, record_change, status, code):
    app = apps[kind]
    record = {**app.extensions[EXTENSION].bundle.card["examples"][0], **record_change}
    response = app.test_client().post("/predict", json=record)
    payload = response.get_json()
    assert response.status_code == status, payload
    if code:
        assert payload["error"]["code"] == code and payload["error"]["field"] == next(iter(record_change))
        return
    import pandas as pd
    frame = pd.DataFrame([record]).astype(trained[kind].rows.dtypes.to_dict())
    assert payload["predictions"] == trained[kind].model.predict(frame).tolist()


def test_an_unknown_category_names_the_allowed_values(apps):
    response = apps["forest"].test_client().post("/predict", json={**apps["forest"].extensions[EXTENSION].bundle.card[
        "examples"][0], "city": "marseille"})
    assert response.get_json()["error"]["message"] == (
        "record 0: feature 'city' must be one of 'lyon', 'nantes', 'paris', 'toulouse'; got 'marseille'")


def test_v2_describes_and_takes_the_real_types(apps, trained):
    app = apps["forest"]
    card = app.extensions[EXTENSION].bundle.card
    client = app.test_client()
    metadata = client.get(f"/v2/models/{card['name']}").get_json()
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {
        "city": "BYTES", "area": "FP64", "rooms": "INT64", "garden": "BOOL"}
    rows = json.loads(trained["forest"].rows.head(5).to_json(orient="records"))
    tensors = [{"name": name, "shape": [5], "datatype": datatype, "data": [row[name] for row in rows]}
               for name, datatype in (("city", "BYTES"), ("area", "FP64"), ("rooms", "INT64"), ("garden", "BOOL"))]
    answer = client.post(f"/v2/models/{card['name']}/infer", json={"inputs": tensors}).get_json()
    assert answer["outputs"][0]["data"] == trained["forest"].model.predict(trained["forest"].rows.head(5)).tolist()
    wrong = client.post(f"/v2/models/{card['name']}/infer", json={"inputs": [{**tensors[0], "datatype": "FP64"},
                                                                              *tensors[1:]]})
    assert wrong.status_code == 422 and wrong.get_json() == {"error": "input 'city': send it as BYTES, not FP64"}
    lightgbm = apps["lightgbm"]
    labels = lightgbm.test_client().get(f"/v2/models/{lightgbm.extensions[EXTENSION].bundle.card['name']}")
    assert labels.get_json()["outputs"][0]["datatype"] == "BYTES"


def test_openapi_describes_the_real_types(apps):
    schema = apps["forest"].test_client().get("/openapi.json").get_json()["components"]["schemas"]["Record"]
    assert schema["properties"]["city"]["type"] == ["string", "null"]
    assert schema["properties"]["city"]["enum"] == ["lyon", "nantes", "paris", "toulouse", None]
    assert schema["properties"]["rooms"]["type"] == "integer" and schema["properties"]["garden"]["type"] == "boolean"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_examples_are_answered_by_the_live_model(apps, kind):
    client = apps[kind].test_client()
    for example in client.get("/example").get_json()["examples"]:
        assert client.post("/predict", json=example["request"]).get_json() == example["response"]


def test_a_sample_without_the_models_columns_is_one_line(trained, tmp_path):
    joblib.dump(trained["forest"].model, tmp_path / "m.joblib")
    trained["forest"].sample.drop(columns=["rooms"]).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DeriveError, match="the sample has no column 'rooms'"):
        derive_card(tmp_path / "m.joblib", tmp_path / "s.csv")
    trained["linear"].sample.assign(target=1.0).to_csv(tmp_path / "t.csv", index=False)
    joblib.dump(trained["linear"].model, tmp_path / "l.joblib")
    with pytest.raises(DeriveError, match="the sample has 11 columns, the model takes 10 features"):
        derive_card(tmp_path / "l.joblib", tmp_path / "t.csv")


def test_the_derive_command_fails_with_one_line_and_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("no model here")
    result = subprocess.run([sys.executable, "-m", "derivecard", str(tmp_path), "--out", str(tmp_path / "o")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {tmp_path}: expected one model file")


def test_skops_files_load_with_the_trusted_types_check(trained, tmp_path):
    import skops.io
    skops.io.dump(trained["linear"].model, tmp_path / "linear.skops")
    trained["linear"].sample.to_csv(tmp_path / "sample.csv", index=False)
    bundle(tmp_path / "linear.skops", tmp_path / "b", tmp_path / "sample.csv")
    app = create_app({"MODEL_DIR": str(tmp_path / "b")})
    assert app.extensions[EXTENSION].bundle.card["artifact"] == {
        "file": "linear.skops", "sha256": app.extensions[EXTENSION].bundle.sha256, "format": "skops", "trusted": []}
    names = app.extensions[EXTENSION].bundle.feature_names
    answer = app.test_client().post("/predict", data=body_of(trained["linear"].rows, names),
                                    content_type="application/json").get_json()
    assert answer["predictions"] == trained["linear"].model.predict(trained["linear"].rows).tolist()


def test_a_skops_type_outside_the_defaults_must_be_trusted_by_name(trained, tmp_path):
    import skops.io
    skops.io.dump(trained["own"].model, tmp_path / "own.skops")
    untrusted = ["homefeatures.AreaPerRoom", "numpy.dtype"]  # the imputer keeps a dtype, outside skops' defaults
    with pytest.raises(DeriveError, match=f"holds types skops does not trust by default: {', '.join(untrusted)}; "
                                          f"check them, then pass --trust {','.join(untrusted)}"):
        derive_card(tmp_path / "own.skops")
    trained["own"].sample.to_csv(tmp_path / "sample.csv", index=False)
    bundle(tmp_path / "own.skops", tmp_path / "b", tmp_path / "sample.csv", trust=untrusted)
    app = create_app({"MODEL_DIR": str(tmp_path / "b")})
    assert app.extensions[EXTENSION].bundle.card["artifact"]["trusted"] == untrusted
    rows = trained["own"].rows
    answer = app.test_client().post("/predict", data=rows.to_json(orient="records"), content_type="application/json")
    assert answer.get_json()["predictions"] == trained["own"].model.predict(rows).tolist()


def test_a_model_with_several_outputs_per_row_is_refused_in_one_line(tmp_path):
    from sklearn.linear_model import LinearRegression
    joblib.dump(LinearRegression().fit([[0.0], [1.0], [2.0]], [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]),
                tmp_path / "two.joblib")
    with pytest.raises(DeriveError, match=r"the model fails on a typical record: it answers \(2,\) values per row, "
                                          r"and only one output per row is served"):
        derive_card(tmp_path / "two.joblib")


def test_which_bring_your_own_models_get_the_fast_path(apps):
    """LightGBM, a user's own transformer first in its pipeline and HistGradientBoosting on pandas categoricals
    stay on model.predict, with the reason; the forest on text and the linear model on an array take the fast
    path."""
    paths = {kind: app.extensions[EXTENSION].predictor.inference for kind, app in apps.items()}
    assert {kind: inference["path"] for kind, inference in paths.items()} == {
        "forest": "fast", "linear": "fast", "boosting": "model.predict", "own": "model.predict", "lightgbm": "model.predict"}
    assert paths["boosting"]["why"] == paths["lightgbm"]["why"] == paths["own"]["why"] == (
        "a model fitted on a DataFrame gets the fast path only as a Pipeline that starts with a ColumnTransformer")
