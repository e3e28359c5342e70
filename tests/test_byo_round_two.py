"""Issue 23's models, in process: trained by tests/fixtures/round_two/train.py (as a user runs a training script),
derived as the builder derives them, and served exactly as `model.predict` and its other methods answered there.
XGBoost needs its own environment: tests/container/test_byo_round_two.py builds and runs all of them as images."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest

from imagebuild import BuildError, bundle_requirements, model_input
from imagebuild.pickle_walk import booster_names
from service.app import create_app
from derivecard.derive import DeriveError, bundle, derive_card
from service.state import EXTENSION

ROUND_TWO = Path(__file__).resolve().parent / "fixtures" / "round_two"
CODE = ROUND_TWO / "code"
IN_PROCESS = ("text", "dates", "dates-no-names", "kmeans", "isolation-forest")


def train(python: str, out: Path, kinds: tuple[str, ...]) -> None:
    """Run the training script with `python`, as a user runs theirs."""
    subprocess.run([python, str(ROUND_TWO / "train.py"), str(out), *kinds], check=True)


def expected_of(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return json.loads((folder / "rows.json").read_text()), json.loads((folder / "expected.json").read_text())


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("round-two")
    train(sys.executable, out, IN_PROCESS)
    return out


@pytest.fixture(scope="module")
def apps(models) -> dict[str, Any]:
    """Each model derived with its sample (the user's code importable, as --code makes it in the image)."""
    sys.path.insert(0, str(CODE))
    made = {}
    for kind in IN_PROCESS:
        bundle(models / kind / "model.joblib", models / kind / "bundle", models / kind / "sample.csv")
        made[kind] = create_app({"MODEL_DIR": str(models / kind / "bundle")})
    yield made
    sys.path.remove(str(CODE))


def card(app: Any) -> dict[str, Any]:
    return app.extensions[EXTENSION].bundle.card


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_held_out_rows_are_answered_as_in_training(apps, models, kind):
    rows, expected = expected_of(models / kind)
    client = apps[kind].test_client()
    extras = [name for name in ("decision_function", "score_samples") if name in expected]
    response = client.post(f"/predict?outputs={','.join(extras)}" if extras else "/predict", json=rows)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert len(rows) == 50 and answer["predictions"] == expected["predict"]
    for name in extras:
        assert answer[name] == expected[name]
    if "predict_proba" in expected:
        labels = [str(label) for label in card(apps[kind])["output"]["labels"]]
        assert [[row[label] for label in labels] for row in answer["probabilities"]] == expected["predict_proba"]


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_v2_declares_and_answers_every_output(apps, models, kind):
    rows, expected = expected_of(models / kind)
    client, name = apps[kind].test_client(), card(apps[kind])["name"]
    metadata = client.get(f"/v2/models/{name}").get_json()
    declared = {output["name"]: output["datatype"] for output in metadata["outputs"]}
    assert set(declared) == set(expected) | ({"predict_proba"} if "predict_proba" in expected else set())
    tensors = [{"name": i["name"], "shape": [5], "datatype": i["datatype"], "data": [r[i["name"]] for r in rows[:5]]}
               for i in metadata["inputs"]]
    response = client.post(f"/v2/models/{name}/infer",
                           json={"inputs": tensors, "outputs": [{"name": n} for n in declared]})
    assert response.status_code == 200, response.get_json()
    for output in response.get_json()["outputs"]:
        assert output["datatype"] == declared[output["name"]]
        flat = [value for row in expected[output["name"]][:5] for value in (row if isinstance(row, list) else [row])]
        assert output["data"] == flat


def test_a_text_pipeline_fitted_on_a_list_of_strings_takes_the_list(apps):
    app = apps["text"]
    assert card(app)["input"] == "texts" and [f["name"] for f in card(app)["features"]] == ["review"]
    assert app.test_client().get("/metadata").get_json()["model"]["input"] == "list of texts"
    review = card(app)["features"][0]
    assert review["closed"] is False  # its values come from the sample: any text is taken
    answer = app.test_client().post("/predict", json={"review": "a word never seen in training"})
    assert answer.status_code == 200


@pytest.mark.parametrize("kind", ["dates", "dates-no-names"])
def test_a_user_parser_keeps_its_text_feature_open(apps, kind):
    """The user's transformer refuses an invented date: that no longer closes the feature to the sample's dates;
    a date outside the sample is answered, and one that does not parse is 422 rejected_by_model naming it."""
    app = apps[kind]
    assert card(app)["input"] == "dataframe"
    signup = next(f for f in card(app)["features"] if f["name"] == "signup_date")
    assert signup["type"] == "string" and signup["closed"] is False
    client = app.test_client()
    assert client.post("/predict", json={"signup_date": "2019-05-17", "spend": 10.0}).status_code == 200
    refused = client.post("/predict", json={"signup_date": "not a date", "spend": 10.0})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "rejected_by_model"
    assert refused.get_json()["error"]["field"] == "signup_date"


def test_clusterers_and_detectors_are_what_they_are(apps):
    kmeans, forest = card(apps["kmeans"]), card(apps["isolation-forest"])
    assert (kmeans["task"], kmeans["output"]["name"]) == ("clustering", "cluster")
    assert (forest["task"], forest["output"]["name"]) == ("outlier_detection", "outlier")
    assert "labels" not in kmeans["output"] and "labels" not in forest["output"]
    outputs = apps["isolation-forest"].test_client().get("/metadata").get_json()["model"]["outputs"]
    assert outputs == ["predict", "decision_function", "score_samples"]
    refused = apps["kmeans"].test_client().post("/predict?outputs=score_samples", json=kmeans["examples"][0])
    assert refused.status_code == 422 and refused.get_json()["error"] == {
        "code": "unknown_output", "message": "unknown output 'score_samples': this model has predict"}
    document = apps["isolation-forest"].test_client().get("/openapi.json").get_json()
    parameter = document["paths"]["/predict"]["post"]["parameters"][0]
    assert parameter["name"] == "outputs" and "decision_function, score_samples" in parameter["description"]


def test_a_search_shows_the_pipeline_it_refitted(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = load_iris(return_X_y=True, as_frame=True)
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression()), {"logisticregression__C": [0.1, 1.0]},
                          cv=3).fit(X, y)
    joblib.dump(search, tmp_path / "search.joblib")
    X.to_csv(tmp_path / "sample.csv", index=False)
    bundle(tmp_path / "search.joblib", tmp_path / "b", tmp_path / "sample.csv")
    app = create_app({"MODEL_DIR": str(tmp_path / "b")})
    loaded = app.test_client().get("/metadata").get_json()["model"]
    assert loaded["search"] == "GridSearchCV" and loaded["estimator"] == "LogisticRegression"
    assert loaded["pipeline"] == ["standardscaler: StandardScaler", "logisticregression: LogisticRegression"]
    assert card(app)["description"].startswith("GridSearchCV over StandardScaler > LogisticRegression")


def test_a_model_that_takes_no_shape_says_what_it_was_given(tmp_path, models):
    """The date model without feature names, and a sample without a header it can use: each way of calling it
    fails, and one line says how it was called, what failed, and what to change."""
    sys.path.insert(0, str(CODE))
    try:
        columns = json.loads((models / "dates" / "rows.json").read_text())[0]
        (tmp_path / "renamed.csv").write_text("when,amount\n" + f"{columns['signup_date']},{columns['spend']}\n")
        with pytest.raises(DeriveError) as raised:
            derive_card(models / "dates-no-names" / "model.joblib", tmp_path / "renamed.csv")
    finally:
        sys.path.remove(str(CODE))
    message = str(raised.value)
    assert "\n" not in message and message.startswith("the model fails on a typical record given a 2-D array: ")
    assert "; given a DataFrame: KeyError: 'signup_date'" in message
    assert message.endswith("or set feature_names_in_ in your transformer's fit")


UBJSON_HEAD = b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{L\x00\x00\x00\x00\x00\x00\x00\x0a"
NAMED = b"\rfeature_names[#L" + (2).to_bytes(8, "big") + b"SL" + (1).to_bytes(8, "big") + b"a"
UNNAMED = b"\rfeature_names[#L" + (0).to_bytes(8, "big")


@pytest.mark.parametrize("handle,named", [
    (UBJSON_HEAD + NAMED, True), (UBJSON_HEAD + UNNAMED, False),
    (b'{"learner": {"feature_names": ["sepal", "petal"]}}', True), (b'{"learner": {"feature_names": []}}', False),
    (b"binf\x00\x00", False)])
def test_xgboost_feature_names_are_read_from_the_pickled_booster(handle, named):
    """XGBoost keeps feature names in its booster's serialized model, not in feature_names_in_: pandas comes
    along only when they are there (the image test checks a real booster)."""
    assert booster_names({"handle": handle}) is named


def test_stock_xgboost_becomes_its_cpu_build(monkeypatch):
    monkeypatch.setattr(bundle_requirements, "has_wheel", lambda name, version: (name, version) == ("xgboost-cpu",
                                                                                                     "3.2.0"))
    pins, notes = bundle_requirements.cpu_builds({"xgboost": "3.2.0", "pandas": "3.1.1"})
    assert pins == {"xgboost-cpu": "3.2.0", "pandas": "3.1.1"} and "xgboost-cpu" in notes[0]
    pins, notes = bundle_requirements.cpu_builds({"xgboost": "1.7.6"})
    assert pins == {"xgboost": "1.7.6"} and notes == ["xgboost 1.7.6 has no CPU-only build (xgboost-cpu) for the "
                                                      "image: the image gets xgboost with its GPU libraries"]


def test_an_untrusted_skops_file_stops_the_build_before_anything_is_fetched(tmp_path, monkeypatch, capsys):
    """The trusted-types check runs on the host with skops from the training environment (here: the project's)."""
    import skops.io

    from imagebuild import cli

    from .byo_models import own_transformer
    skops.io.dump(own_transformer(tmp_path / "code").model, tmp_path / "own.skops")
    untrusted = sorted(skops.io.get_untrusted_types(file=tmp_path / "own.skops"))
    assert "homefeatures.AreaPerRoom" in untrusted

    def fetched(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the requirements were resolved before the trust check")
    monkeypatch.setattr(bundle_requirements, "for_build", fetched)
    assert cli.main(["--model", str(tmp_path / "own.skops"), "--code", str(tmp_path / "code"),
                     "--tag", "byo-untrusted:test"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: own.skops holds types skops does not trust by default: {', '.join(untrusted)}; "
                      f"check them, then pass --trust {','.join(untrusted)}"]
    source = model_input.model_source(tmp_path / "own.skops", code=[tmp_path / "code"], trust=untrusted)
    model_input.check_trust(source, [sys.executable])  # trusted: no error
    with pytest.raises(BuildError):
        model_input.check_trust(model_input.model_source(tmp_path / "own.skops"), ["/nonexistent/python",
                                                                                    sys.executable])
