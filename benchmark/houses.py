"""The bring-your-own model the benchmark serves, shared with the tests (tests/byo_models.py): house prices from a
DataFrame with a text column and missing values, a ColumnTransformer and a random forest, fitted as users do."""
from __future__ import annotations

from typing import Any

import numpy as np

SEED = 11


def houses(count: int, seed: int = SEED):
    """Generated house prices: a city (text, some missing), an area (some missing), rooms, a garden flag."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    city = rng.choice(["lyon", "nantes", "paris", "toulouse"], count).astype(object)
    area = rng.normal(80, 25, count).clip(15, None).round(1)
    rooms = rng.integers(1, 7, count)
    garden = rng.random(count) < 0.3
    price = area * np.select([city == "paris", city == "lyon"], [10.0, 5.0], 3.5) + rooms * 4 + garden * 30
    price += rng.normal(0, 20, count)
    frame = pd.DataFrame({"city": city, "area": area, "rooms": rooms, "garden": garden})
    frame.loc[rng.random(count) < 0.08, "area"] = np.nan
    frame.loc[rng.random(count) < 0.05, "city"] = np.nan
    return frame, price


def forest_on_strings() -> tuple[Any, Any, Any]:
    """RandomForest behind a ColumnTransformer: a OneHotEncoder on a text column selected by name, imputers.
    The fitted model, 200 training rows (the --sample) and 100 held-out rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    frame, price = houses(600)
    prepare = ColumnTransformer([
        ("city", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), ["city"]),
        ("numbers", SimpleImputer(strategy="median"), ["area", "rooms"]),
        ("flags", "passthrough", ["garden"]),
    ])
    model = make_pipeline(prepare, RandomForestRegressor(n_estimators=40, random_state=SEED)).fit(
        frame[:500], price[:500])
    return model, frame[:200], frame[500:]
