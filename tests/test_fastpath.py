"""The exact fast path: for each family it serves, answers equal to model.predict / predict_proba bit for bit on
rows inside and far outside the training range, alone and stacked; rows it cannot take (not finite, too large for
float32) get what model.predict gives them, errors included; every other model is served by model.predict with
the reason named in /metadata."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier, GradientBoostingRegressor,
                              HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, PolynomialFeatures, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from service import fastpath
from service.app import create_app
from service.bundle import load_bundle
from derivecard.derive import bundle as derive_bundle
from service.errors import ApiError
from service.predictor import FAST_PATH, MODEL_PATH, Predictor

FEATURES = 6


def regression(missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=300, n_features=FEATURES, noise=5.0, random_state=3)
    X = X * [1, 10, 100, 0.1, 1000, 1] + [0, 5, -50, 1, 2000, 0]  # columns in different units, as users' are
    if missing:
        X[np.random.default_rng(3).random(X.shape) < 0.1] = np.nan
    return X, y


def classification(classes: int, missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=FEATURES, n_informative=4, n_classes=classes,
                               random_state=5)
    if missing:
        X[np.random.default_rng(5).random(X.shape) < 0.1] = np.nan
    return X, np.array(["low", "mid", "high"])[y] if classes == 3 else y


FAMILIES = {
    "scaler + gradient boosting": lambda: make_pipeline(StandardScaler(), GradientBoostingRegressor(
        n_estimators=60, subsample=0.8, random_state=0)).fit(*regression()),
    "imputer + scaler + ridge": lambda: make_pipeline(SimpleImputer(), StandardScaler(), Ridge()).fit(
        *regression(missing=True)),
    "linear regression": lambda: LinearRegression().fit(*regression()),
    "min-max + lasso": lambda: make_pipeline(MinMaxScaler(clip=True), Lasso(alpha=0.1)).fit(*regression()),
    "decision tree": lambda: DecisionTreeRegressor(max_depth=6, random_state=0).fit(*regression()),
    "random forest": lambda: RandomForestRegressor(n_estimators=30, random_state=0).fit(*regression()),
    "hist gradient boosting with NaN": lambda: HistGradientBoostingRegressor(max_iter=40).fit(
        *regression(missing=True)),
    "logistic regression, binary": lambda: make_pipeline(StandardScaler(), LogisticRegression()).fit(
        *classification(2)),
    "logistic regression, 3 classes": lambda: make_pipeline(MaxAbsScaler(), LogisticRegression()).fit(
        *classification(3)),
    "ridge classifier": lambda: RidgeClassifier().fit(*classification(3)),
    "tree classifier": lambda: DecisionTreeClassifier(max_depth=5, random_state=0).fit(*classification(3)),
    "forest classifier": lambda: make_pipeline(SimpleImputer(strategy="median"), RandomForestClassifier(
        n_estimators=25, random_state=0)).fit(*classification(3, missing=True)),
    "extra trees, binary": lambda: ExtraTreesClassifier(n_estimators=20, random_state=0).fit(*classification(2)),
    "gradient boosting, binary": lambda: GradientBoostingClassifier(n_estimators=40, random_state=0).fit(
        *classification(2)),
    "gradient boosting, 3 classes": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0).fit(
        *classification(3)),
    "hist gradient boosting classifier": lambda: HistGradientBoostingClassifier(max_iter=30).fit(
        *classification(3, missing=True)),
}


def served(model, folder: Path, training: np.ndarray) -> Path:
    """The bundle scripts/build.py would make: the model dumped with joblib, its card derived with a sample."""
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    pd.DataFrame(training, columns=[f"f{i}" for i in range(FEATURES)]).to_csv(folder / "sample.csv", index=False)
    derive_bundle(folder / "model.joblib", folder / "bundle", folder / "sample.csv")
    return folder / "bundle"


@pytest.fixture(scope="module")
def predictors(tmp_path_factory) -> dict[str, Predictor]:
    made = {}
    for name, train in FAMILIES.items():
        model = train()
        training = regression(missing=True)[0] if "NaN" in name or "imput" in name else regression()[0]
        folder = served(model, tmp_path_factory.mktemp("fast"), training)
        made[name] = Predictor(load_bundle(folder))
    return made


def rows_to_try(rng: np.random.Generator, count: int) -> np.ndarray:
    """Rows a client may send: typical values, values far outside the training range, NaN here and there."""
    rows = rng.normal(0, 1, (count, FEATURES)) * rng.choice([1, 10, 1e3, 1e6], (count, FEATURES))
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows


def outcome_of(model, rows: np.ndarray, proba: bool):
    """What model.predict (and predict_proba) give, or the exception they raise."""
    try:
        return model.predict(rows), model.predict_proba(rows) if proba else None
    except ValueError as exc:
        return exc


def served_outcome(predictor: Predictor, rows: np.ndarray):
    """What the service computes for these rows (the fast path or the model), or the exception raised."""
    try:
        return predictor.infer(rows.tolist())
    except ValueError as exc:
        return exc


def assert_same(got, expected) -> None:
    if isinstance(expected, Exception):
        assert isinstance(got, type(expected)) and str(got) == str(expected)
        return
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine is None) == (theirs is None)
        if theirs is not None:
            assert mine.dtype == theirs.dtype and mine.tobytes() == theirs.tobytes()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_is_served_by_the_fast_path_bit_for_bit(predictors, name):
    predictor = predictors[name]
    assert predictor.inference["path"] == FAST_PATH, predictor.inference
    model = predictor.bundle.model
    rng = np.random.default_rng(sum(map(ord, name)))
    rows = rows_to_try(rng, 200)
    taken = 0
    for row in rows:
        single = row[np.newaxis, :]
        try:
            predictor.fast(single)
            taken += 1
        except fastpath.Declined:
            pass
        assert_same(served_outcome(predictor, single), outcome_of(model, single, predictor.has_proba))
    assert taken >= 100  # most rows went through the fast path itself
    finite = rows[np.isfinite(rows).all(axis=1)]
    assert_same(served_outcome(predictor, finite), outcome_of(model, finite, predictor.has_proba))  # as batches are


def test_rows_the_fast_path_declines_get_what_model_predict_gives(predictors):
    """1e300 is finite, but not as float32: the trees' own validation refuses it, and so does the service."""
    predictor = predictors["scaler + gradient boosting"]
    row = [[1e300] + [0.0] * (FEATURES - 1)]
    with pytest.raises(fastpath.Declined):
        predictor.fast(np.asarray(row))
    with pytest.raises(ValueError) as expected:
        predictor.bundle.model.predict(np.asarray(row))
    with pytest.raises(ApiError) as answer:
        predictor.predict(row)
    assert answer.value.status == 422 and str(expected.value).split()[0] in answer.value.message
    nan_row = [[np.nan] * FEATURES]
    with pytest.raises(fastpath.Declined):
        predictor.fast(np.asarray(nan_row))


class Doubler(TransformerMixin, BaseEstimator):
    """A user's own transformer."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X) * 2


class TunedScaler(StandardScaler):
    """A subclass of a supported step: its arithmetic may differ, so it is not taken for the original."""

    def transform(self, X, copy=None):
        return super().transform(X, copy) + 1


@pytest.mark.parametrize("model, reason", [
    (lambda: make_pipeline(Doubler(), Ridge()), "no fast path for the step Doubler"),
    (lambda: make_pipeline(TunedScaler(), Ridge()), "no fast path for the step TunedScaler"),
    (lambda: make_pipeline(PolynomialFeatures(), Ridge()), "no fast path for the step PolynomialFeatures"),
    (lambda: RandomForestRegressor(n_estimators=5, n_jobs=2, random_state=0), "RandomForestRegressor(n_jobs=2)"),
    (lambda: GradientBoostingRegressor(n_estimators=5, init=LinearRegression()),
     "GradientBoostingRegressor with init=LinearRegression"),
])
def test_other_models_are_served_by_model_predict_with_the_reason(tmp_path, model, reason):
    fitted = model().fit(*regression())
    predictor = Predictor(dataclasses.replace(load_bundle(served(Ridge().fit(*regression()), tmp_path,
                                                                  regression()[0])), model=fitted))
    assert predictor.inference["path"] == MODEL_PATH and reason in predictor.inference["why"]
    assert predictor.fast is None
    rows = regression()[0][:5]
    # rtol, not equality: a forest with n_jobs=2 sums its trees in thread order, so even two calls of
    # model.predict on the same rows may differ in the last bit (seen here), which is why it gets no fast path
    np.testing.assert_allclose(predictor.predict(rows.tolist())["predictions"], fitted.predict(rows), rtol=1e-12)


def test_a_fast_path_that_differs_from_the_model_is_not_used(predictors, monkeypatch, caplog):
    """The start-up check, not the list of families, decides: a step off by one bit switches the path off."""
    def off_by_one_bit(scaler):
        exact = original(scaler)
        return lambda matrix: np.nextafter(exact(matrix), np.inf)
    caplog.set_level(logging.INFO, logger="service.predictor")
    original = fastpath.TRANSFORMS["StandardScaler"]
    monkeypatch.setitem(fastpath.TRANSFORMS, "StandardScaler", off_by_one_bit)
    predictor = Predictor(predictors["imputer + scaler + ridge"].bundle)
    assert predictor.inference["path"] == MODEL_PATH
    assert "differs from model.predict on the probe row" in predictor.inference["why"]
    assert "inference: model.predict (the fast path (SimpleImputer -> StandardScaler -> Ridge) differs" in caplog.text


def test_metadata_and_the_switch_name_the_path(predictors):
    folder = predictors["scaler + gradient boosting"].bundle.path
    on = create_app({"MODEL_DIR": str(folder)}).test_client().get("/metadata").get_json()["runtime"]
    assert on["inference"] == {"path": "fast", "estimators": "StandardScaler -> GradientBoostingRegressor",
                               "why": "scikit-learn's compiled routines reproduced model.predict bit for bit on "
                                      "32 probe rows, alone and together"}
    off = create_app({"MODEL_DIR": str(folder), "FAST_PATH": 0}).test_client().get("/metadata").get_json()["runtime"]
    assert off["inference"] == {"path": "model.predict", "why": "the fast path is switched off (SERVICE_FAST_PATH=0)"}


def test_the_default_bundles_are_served_by_the_fast_path():
    from .conftest import BUNDLES
    for folder in BUNDLES.values():
        assert Predictor(load_bundle(folder)).inference["path"] == FAST_PATH


def test_a_dataframe_pipeline_with_text_and_nulls_gets_the_fast_path_bit_for_bit(tmp_path):
    """The benchmark's bring-your-own model: a ColumnTransformer (imputers, a one-hot encoder on text) and a
    forest, fitted on a DataFrame; held-out rows with missing text and numbers, predicted alone and together."""
    from benchmark.houses import forest_on_strings
    model, sample, held_out = forest_on_strings()
    joblib.dump(model, tmp_path / "model.joblib")
    sample.to_csv(tmp_path / "sample.csv", index=False)
    derive_bundle(tmp_path / "model.joblib", tmp_path / "bundle", tmp_path / "sample.csv")
    predictor = Predictor(load_bundle(tmp_path / "bundle"), batch_max_rows=64)
    assert predictor.inference["path"] == FAST_PATH, predictor.inference
    assert predictor.inference["estimators"].startswith("ColumnTransformer(SimpleImputer+OneHotEncoder")
    assert held_out.isna().any().any()
    records = held_out.astype(object).where(held_out.notna(), None).to_dict("records")
    rows = [[feature.parse(record[feature.name], "row") for feature in predictor.bundle.features]
            for record in records]
    together = predictor.predict(rows)["predictions"]
    alone = [predictor.predict([row])["predictions"][0] for row in rows]
    assert together == alone == model.predict(held_out).tolist()
    unknown = [[feature.parse("paris", "row") if feature.name == "city" else row_value
                for feature, row_value in zip(predictor.bundle.features, rows[0], strict=True)]]
    assert predictor.predict(unknown)["predictions"] == model.predict(predictor.bundle.to_input(unknown)).tolist()

