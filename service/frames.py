"""Rows of typed values (modelcard/features.py) turned into what predict() was fitted on: a float64 NumPy array
when every feature is numeric, an object array otherwise; for a model fitted on a DataFrame, a DataFrame with the
fitted column names and dtypes (category columns with the known categories); for a model fitted on a plain list
of texts (a text pipeline), the list of the one feature's values.
"""
from __future__ import annotations

import importlib
from typing import Any
from collections.abc import Callable, Collection, Sequence

import numpy as np

from modelcard.features import Feature

Values = list[list[Any]] | np.ndarray  # rows as read; a float64 array for an array model's matrix of numbers

NUMPY_DTYPES = ("float64", "float32", "int64", "int32", "bool")
DEFAULT_DTYPES = {"number": "float64", "integer": "int64", "boolean": "bool", "category": "category"}
INPUTS = ("array", "dataframe", "texts")  # the card's "input": what predict() receives


def pandas() -> Any:
    """pandas, imported only for models fitted on a DataFrame (the image has it only when such a bundle needs
    it; imported by name so the requirements scan of service/ does not list it)."""
    return importlib.import_module("pandas")


def input_builder(features: Sequence[Feature], kind: str) -> Callable[[Collection[Any]], Any]:
    """A function from parsed rows to what predict() takes, for the card's `kind` of input (INPUTS)."""
    if kind == "dataframe":
        return _frame_builder(features)
    if kind == "texts":
        return lambda rows: [row[0] for row in rows]
    if all(f.numeric for f in features):
        return lambda rows: np.asarray(rows, dtype=np.float64)

    def objects(rows: Collection[Any]) -> np.ndarray:
        matrix = np.empty((len(rows), len(features)), dtype=object)
        matrix[:] = rows
        return matrix
    return objects


def default_text_dtype() -> str:
    """pandas' dtype for a column of text, as read_csv gives it: object before pandas 3, str from 3 on."""
    return str(pandas().Series(["text"]).dtype)


def column_dtype(feature: Feature) -> str:
    """The column's pandas dtype: the card's, else what read_csv gives for this type of value."""
    if feature.dtype:
        return feature.dtype
    if feature.type == "string":
        return default_text_dtype()
    if feature.nullable and feature.type == "integer":
        return "float64"
    if feature.nullable and feature.type == "boolean":
        return "object"
    return DEFAULT_DTYPES[feature.type]


def _frame_builder(features: Sequence[Feature]) -> Callable[[Collection[Any]], Any]:
    pd = pandas()
    names = [f.name for f in features]
    dtypes = [column_dtype(f) for f in features]
    categories = [pd.CategoricalDtype(list(f.values or ())) if dtype == "category" else None
                  for f, dtype in zip(features, dtypes, strict=True)]

    def column(values: list[Any], dtype: str, category: Any) -> Any:
        if category is not None:  # a value outside the categories is missing, as the model sees it
            known = set(category.categories)
            return pd.Categorical([value if value in known else None for value in values], dtype=category)
        if dtype == "object":
            array = np.empty(len(values), dtype=object)
            array[:] = values
            return array
        if dtype in NUMPY_DTYPES:
            return np.asarray(values, dtype=dtype)
        return pd.array(values, dtype=dtype)  # pandas' own dtypes: str, string, boolean, Int64, Float64

    def frame(rows: Collection[Any]) -> Any:
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return pd.DataFrame({name: column(list(values), dtype, category)
                             for name, values, dtype, category in zip(names, columns, dtypes, categories, strict=True)})
    return frame
