"""Models of the kinds users bring, trained here as users train them: pandas DataFrames with text columns and
missing values, a NumPy array, pandas categoricals, a transformer from the user's own package, LightGBM.

Each function returns a `Trained`: the fitted model, a sample of its training rows (what --sample gets, as a
DataFrame to write with to_csv), and held-out rows with text and missing values to predict.
"""
from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.houses import SEED, houses
from benchmark.houses import forest_on_strings as houses_forest


@dataclass
class Trained:
    model: Any
    sample: Any  # a DataFrame of training rows (features only), for --sample
    rows: Any  # held-out rows to predict: a DataFrame, or an array for a model fitted on one
    code: Path | None = None  # the user's own package, for --code


def forest_on_strings() -> Trained:
    """RandomForest behind a ColumnTransformer: a OneHotEncoder on a text column selected by name, imputers."""
    return Trained(*houses_forest())


def linear_on_array() -> Trained:
    """LinearRegression on a NumPy array (scikit-learn's diabetes data, in its original units)."""
    import pandas as pd
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    data = load_diabetes(scaled=False)
    X, y = data.data, data.target
    model = LinearRegression().fit(X[:400], y[:400])
    return Trained(model, pd.DataFrame(X[:100], columns=data.feature_names), X[400:])


def boosting_on_categories() -> Trained:
    """HistGradientBoostingClassifier with categorical_features="from_dtype", NaN in training."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    frame, price = houses(800, seed=SEED + 1)
    frame = frame.astype({"city": "category"})
    label = np.where(price > np.median(price), "expensive", "cheap")
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=60,
                                           random_state=SEED).fit(frame[:700], label[:700])
    return Trained(model, frame[:200], frame[700:])


TRANSFORMER = '''
"""The user's own feature engineering, in their own package."""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class AreaPerRoom(BaseEstimator, TransformerMixin):
    """Adds area / rooms as a column; the rest passes through."""

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        return np.column_stack([X, X[:, 0] / np.maximum(X[:, 1], 1)])
'''


def own_transformer(code: Path) -> Trained:
    """A pipeline with a transformer class from the user's package (written to `code`/homefeatures)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    package = code / "homefeatures"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(textwrap.dedent(TRANSFORMER))
    sys.path.insert(0, str(code))
    try:
        from homefeatures import AreaPerRoom
    finally:
        sys.path.remove(str(code))
    frame, price = houses(500, seed=SEED + 2)
    numbers = frame[["area", "rooms"]]
    model = make_pipeline(SimpleImputer(), AreaPerRoom(), Ridge(alpha=1.0)).fit(numbers[:400], price[:400])
    return Trained(model, numbers[:150], numbers[400:], code)


def lightgbm_classifier() -> Trained:
    """LGBMClassifier on a DataFrame with a pandas categorical and missing values."""
    import lightgbm
    frame, price = houses(800, seed=SEED + 3)
    frame = frame.astype({"city": "category"})
    label = np.where(price > np.quantile(price, 0.66), "high", np.where(price > np.quantile(price, 0.33),
                                                                          "mid", "low"))
    model = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=SEED, verbose=-1).fit(
        frame[:700], label[:700])
    return Trained(model, frame[:200], frame[700:])


KINDS = ("forest", "linear", "boosting", "own", "lightgbm")


def train_all(code: Path) -> dict[str, Trained]:
    """The five models, by kind; the user's package of the "own" model goes to `code`."""
    return {"forest": forest_on_strings(), "linear": linear_on_array(), "boosting": boosting_on_categories(),
            "own": own_transformer(code), "lightgbm": lightgbm_classifier()}
