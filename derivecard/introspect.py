"""What a fitted model itself knows about its input columns: the categories its encoders learned, how missing
values were marked in training (None or NaN), and which columns were pandas categoricals.

Walked: Pipeline (its first step sees the raw columns; imputers pass them on), ColumnTransformer, SimpleImputer,
the encoders with categories_ (OneHotEncoder, OrdinalEncoder, TargetEncoder), HistGradientBoosting's own
categorical preprocessing, LightGBM's pandas categoricals, and the usual wrappers (search, target transform).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelcard.card import plain


@dataclass
class Known:
    """What the model knows of one input column."""

    values: list[Any] | None = None  # the categories seen in training, missing ones left out
    missing: str | None = None  # "NaN" or "None": the marker of a missing value in training
    category_dtype: bool = False  # the column was a pandas categorical


def _marker(value: Any) -> str | None:
    if value is None:
        return "None"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return None


def _columns_of(spec: Any, columns: list[str]) -> list[str]:
    """A ColumnTransformer's column selection (names, positions, slice or mask) as names."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, int):
        return [columns[spec]]
    if isinstance(spec, slice):
        return columns[spec]
    items = [plain(item) for item in spec] if hasattr(spec, "__iter__") else []
    if items and all(isinstance(item, bool) for item in items):
        return [name for name, keep in zip(columns, items, strict=False) if keep]
    return [columns[item] if isinstance(item, int) else str(item) for item in items]


def _visit(estimator: Any, columns: list[str], found: dict[str, Known]) -> None:
    for wrapped in ("best_estimator_", "regressor_"):
        if hasattr(estimator, wrapped):
            _visit(getattr(estimator, wrapped), columns, found)
            return
    if hasattr(estimator, "steps"):  # a Pipeline: the first step, and the next ones while columns pass through
        for _, step in estimator.steps:
            if step is None or step == "passthrough":
                continue
            _visit(step, columns, found)
            if type(step).__name__ != "SimpleImputer" or getattr(step, "add_indicator", False):
                break
        return
    if hasattr(estimator, "transformers_"):  # a ColumnTransformer
        indices = getattr(estimator, "_transformer_to_input_indices", {})
        for name, transformer, spec in estimator.transformers_:
            if isinstance(transformer, str):
                continue
            selected = [columns[i] for i in indices[name]] if name in indices else _columns_of(spec, columns)
            _visit(transformer, selected, found)
        return
    if type(estimator).__name__ == "SimpleImputer":
        marker = _marker(getattr(estimator, "missing_values", None))
        for column in columns:
            known = found.setdefault(column, Known())
            known.missing = known.missing or marker
        return
    if hasattr(estimator, "categories_") and isinstance(estimator.categories_, list):
        for column, categories in zip(columns, estimator.categories_, strict=False):
            known = found.setdefault(column, Known())
            values = [plain(value) for value in categories]
            known.values = [value for value in values if _marker(value) is None]
            known.missing = known.missing or next((_marker(v) for v in values if _marker(v)), None)
        return
    if hasattr(estimator, "is_categorical_") and hasattr(estimator, "_preprocessor"):
        categorical = [bool(flag) for flag in (estimator.is_categorical_ if estimator.is_categorical_ is not None
                                               else [])]
        if estimator._preprocessor is not None:
            _visit(estimator._preprocessor, columns, found)
        if getattr(estimator, "categorical_features", None) == "from_dtype":
            for column, flag in zip(columns, categorical, strict=False):
                if flag:
                    found.setdefault(column, Known()).category_dtype = True
        return
    booster = getattr(estimator, "_Booster", None)
    if booster is not None and getattr(booster, "pandas_categorical", None):
        positions = booster.params.get("categorical_column") or []
        for position, categories in zip(positions, booster.pandas_categorical, strict=False):
            known = found.setdefault(columns[position], Known())
            known.values, known.category_dtype = [plain(v) for v in categories], True


def known_columns(model: Any, columns: list[str]) -> dict[str, Known]:
    """Column name -> what the model knows of it (only the columns it knows something about)."""
    found: dict[str, Known] = {}
    _visit(model, columns, found)
    return found
