"""Train the demo bundles from data sets that ship inside scikit-learn (nothing is downloaded).

    python scripts/train.py                 # writes models/diabetes and models/iris (also: sms-train)
    python scripts/train.py --out DIR       # writes DIR/diabetes and DIR/iris

Same seed, same library versions: same predictions. Each bundle is a folder with model.joblib and card.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelcard.card import sha256_file

from . import ROOT, write_atomic

SEED = 7  # the book's seed

DIABETES_FEATURES = [
    ("age", "age", "years"),
    ("sex", "sex, coded 1 or 2 in the source data", None),
    ("bmi", "body mass index", "kg/m2"),
    ("bp", "average blood pressure", "mm Hg"),
    ("s1", "tc: total serum cholesterol", "mg/dl"),
    ("s2", "ldl: low-density lipoproteins", "mg/dl"),
    ("s3", "hdl: high-density lipoproteins", "mg/dl"),
    ("s4", "tch: total cholesterol / HDL", "ratio"),
    ("s5", "ltg: log of serum triglycerides level", "log(mg/dl)"),
    ("s6", "glu: blood sugar level", "mg/dl"),
]
IRIS_FEATURES = [
    ("sepal_length", "sepal length", "cm"),
    ("sepal_width", "sepal width", "cm"),
    ("petal_length", "petal length", "cm"),
    ("petal_width", "petal width", "cm"),
]


def _features(spec: Sequence[tuple[str, str, str | None]], train: np.ndarray) -> list[dict[str, Any]]:
    """Card entries: name, type, description, unit, and the range seen in training."""
    return [{"name": name, "type": "number", "description": description, "unit": unit,
             "min": float(train[:, i].min()), "max": float(train[:, i].max())}
            for i, (name, description, unit) in enumerate(spec)]


def _records(spec: Sequence[tuple[str, str, str | None]], rows: np.ndarray) -> list[dict[str, float]]:
    return [{name: float(value) for (name, _, _), value in zip(spec, row, strict=True)} for row in rows]


def diabetes() -> tuple[Pipeline, dict[str, Any]]:
    """Disease progression one year after baseline: a regression in the spirit of the book's house prices."""
    X, y = load_diabetes(return_X_y=True, scaled=False)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=SEED)
    model = Pipeline([
        ("scale", StandardScaler()),  # fitted on the training split only, applied to every request
        ("gbr", GradientBoostingRegressor(n_estimators=300, learning_rate=0.05, max_depth=3,
                                          subsample=0.8, random_state=SEED)),
    ]).fit(X_train, y_train)
    predicted = model.predict(X_test)
    card = {
        "name": "diabetes-progression",
        "title": "Diabetes progression regressor",
        "version": "1.0.0",
        "description": "Gradient boosting (300 trees, seed 7) behind a standard scaler fitted on the training "
                       "split. Predicts a quantitative measure of diabetes progression one year after "
                       "baseline from ten baseline variables, in their original units.",
        "task": "regression",
        "dataset": {
            "title": "Diabetes data (Efron, Hastie, Johnstone and Tibshirani)",
            "link": "https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html",
            "licence": "distributed with scikit-learn (BSD-3-Clause); original data published with the paper below",
            "citation": "Efron, B., Hastie, T., Johnstone, I. and Tibshirani, R. (2004). Least Angle Regression. "
                        "Annals of Statistics 32(2), 407-499.",
            "rows": {"train": int(len(X_train)), "test": int(len(X_test))},
        },
        "features": _features(DIABETES_FEATURES, X_train),
        "output": {"name": "progression",
                   "description": "disease progression one year after baseline",
                   "unit": "score (the source data's scale, about 25 to 346)"},
        "metrics": {"split": "held-out 20%, seed 7",
                    "r2": float(r2_score(y_test, predicted)),
                    "mae": float(mean_absolute_error(y_test, predicted)),
                    "rmse": float(np.sqrt(mean_squared_error(y_test, predicted)))},
        "examples": _records(DIABETES_FEATURES, X_test[:2]),
    }
    return model, card


def iris() -> tuple[Pipeline, dict[str, Any]]:
    """A small classifier with predict_proba: proves the service is not tied to one model."""
    data = load_iris()
    labels = data.target_names[data.target]
    X_train, X_test, y_train, y_test = train_test_split(data.data, labels, test_size=0.3,
                                                        random_state=SEED, stratify=labels)
    model = Pipeline([("scale", StandardScaler()),
                      ("logreg", LogisticRegression(max_iter=1000, random_state=SEED))]).fit(X_train, y_train)
    predicted = model.predict(X_test)
    card = {
        "name": "iris-species",
        "title": "Iris species classifier",
        "version": "1.0.0",
        "description": "Logistic regression behind a standard scaler; answers the species and its probabilities.",
        "task": "classification",
        "dataset": {
            "title": "Iris (Fisher, 1936)",
            "link": "https://archive.ics.uci.edu/dataset/53/iris",
            "licence": "CC BY 4.0",
            "citation": "Fisher, R. A. (1936). The use of multiple measurements in taxonomic problems. "
                        "Annals of Eugenics 7(2), 179-188.",
            "rows": {"train": int(len(X_train)), "test": int(len(X_test))},
        },
        "features": _features(IRIS_FEATURES, X_train),
        "output": {"name": "species", "description": "iris species",
                   "labels": [str(label) for label in model.classes_]},
        "metrics": {"split": "held-out 30%, stratified, seed 7",
                    "accuracy": float(accuracy_score(y_test, predicted)),
                    "f1_macro": float(f1_score(y_test, predicted, average="macro"))},
        "examples": _records(IRIS_FEATURES, X_test[:2]),
    }
    return model, card


def write_bundle(directory: Path, model: Any, card: dict[str, Any], created: str) -> None:
    """Write model.joblib, then the card with the artifact's sha256 (the service checks it before unpickling)."""
    directory.mkdir(parents=True, exist_ok=True)
    artifact = directory / "model.joblib"
    joblib.dump(model, artifact)
    digest = sha256_file(artifact)
    card = {**card, "sklearn_version": sklearn.__version__,
            "artifact": {"file": artifact.name, "sha256": digest}, "created": created}
    write_atomic(directory / "card.json", json.dumps(card, indent=2) + "\n")


BUNDLES: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {"diabetes": diabetes, "iris": iris}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="folder for the bundles")
    parser.add_argument("--created", default=dt.date.today().isoformat(), help="date written into the cards")
    args = parser.parse_args(argv)
    for name, train in BUNDLES.items():
        model, card = train()
        write_bundle(args.out / name, model, card, args.created)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
