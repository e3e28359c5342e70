"""Typed features: a JSON value checked against its card entry, and rows turned into what predict() was fitted on.

A value becomes what the model saw in training: numbers float, whole numbers int, booleans bool, text str; a
null (for a nullable feature) becomes NaN for numbers and `null_as` (None or NaN) for text and booleans. Rows
become a float64 NumPy array when every feature is numeric, an object array otherwise, or, for a model fitted on a
DataFrame, a DataFrame with the fitted column names and dtypes (category columns with the known categories).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .errors import ApiError

NAN = float("nan")
INT64 = (-(2 ** 63), 2 ** 63 - 1)
LISTED_VALUES = 20  # allowed values named in an error message
NUMERIC = ("number", "integer", "boolean")
NUMPY_DTYPES = ("float64", "float32", "int64", "int32", "bool")
DEFAULT_DTYPES = {"number": "float64", "integer": "int64", "boolean": "bool", "category": "category"}


def _invalid(code: str, message: str, field: str) -> ApiError:
    return ApiError(422, code, message, field)


def _family(value: Any) -> str:
    """The JSON type of a value: boolean, number, string or nested."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "nested"


ARTICLES = {"boolean": "a boolean", "number": "a number", "string": "a string", "nested": "a nested value"}


def _kind(value: Any) -> str:
    return ARTICLES[_family(value)]


@dataclass(frozen=True)
class Feature:
    """One card feature, ready to check values."""

    name: str
    type: str
    nullable: bool = False
    values: tuple[Any, ...] | None = None
    closed: bool = True
    dtype: str | None = None
    null_as: str | None = None
    minimum: float = 0.0  # the range seen in training, where the card gives it
    maximum: float = 1.0

    @classmethod
    def from_card(cls, entry: dict[str, Any]) -> Feature:
        values = entry.get("values")
        return cls(name=entry["name"], type=entry["type"], nullable=bool(entry.get("nullable", False)),
                   values=tuple(values) if values is not None else None,
                   closed=bool(entry.get("closed", True)) and values is not None,
                   dtype=entry.get("dtype"), null_as=entry.get("null_as"),
                   minimum=entry.get("min", 0.0), maximum=entry.get("max", entry.get("min", 0.0) + 1.0))

    @property
    def missing(self) -> Any:
        """What a null becomes."""
        if self.type in ("number", "integer"):
            return NAN
        default = "None" if self.type in ("string", "category") else "NaN"
        return None if (self.null_as or default) == "None" else NAN

    @property
    def numeric(self) -> bool:
        """Whether every value of this feature is a number or a boolean (the model gets a float64 matrix)."""
        return self.type in NUMERIC or (self.type == "category" and bool(self.values)
                                        and all(isinstance(v, (int, float)) for v in self.values))

    def typical(self, share: float, index: int) -> Any:
        """A plausible JSON value: a point (`share`) of the training range, or the index-th known value."""
        if self.values:
            return self.values[index % len(self.values)]
        if self.type == "boolean":
            return bool(index % 2)
        if self.type == "string":
            return f"example-{index}"
        value = self.minimum + share * (self.maximum - self.minimum)
        return round(value) if self.type == "integer" else round(value, 4)

    def _allowed(self) -> str:
        shown = ", ".join(repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                          for v in self.values[:LISTED_VALUES])
        more = len(self.values) - LISTED_VALUES
        return shown + (f" and {more} more (GET /metadata lists them)" if more > 0 else "")

    def parse(self, value: Any, where: str) -> Any:
        """The value the model gets for JSON `value`, or a 422 naming the feature."""
        name = self.name
        if value is None:
            if self.nullable:
                return self.missing
            raise _invalid("null_value", f"{where}: feature '{name}' may not be null (it had no missing values "
                                         f"in training)", name)
        if isinstance(value, (list, dict)):
            raise _invalid("nested_value", f"{where}: feature '{name}' takes one value, got a nested value", name)
        if self.type == "number":
            return self._number(value, where)
        if self.type == "integer":
            return self._integer(value, where)
        if self.type == "boolean":
            if not isinstance(value, bool):
                raise _invalid("not_a_boolean", f"{where}: feature '{name}' must be true or false, got "
                                                f"{_kind(value)}", name)
            return value
        return self._listed(value, where)

    def _number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid("not_a_number", f"{where}: feature '{self.name}' must be a finite number, got "
                                           f"{_kind(value)}", self.name)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _invalid("not_finite", f"{where}: feature '{self.name}' must be a finite number, got a number "
                                         f"out of range", self.name)
        return number

    def _integer(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not value.is_integer()):
            got = "a fraction" if isinstance(value, float) and math.isfinite(value) else _kind(value)
            raise _invalid("not_an_integer", f"{where}: feature '{self.name}' must be a whole number, got {got}",
                           self.name)
        if not INT64[0] <= int(value) <= INT64[1]:
            raise _invalid("not_finite", f"{where}: feature '{self.name}' is out of the 64-bit integer range",
                           self.name)
        return int(value)

    def _listed(self, value: Any, where: str) -> Any:
        """string: any text (one of `values` when closed); category: one of `values`, of their JSON type."""
        expected = "string" if self.type == "string" or not self.values else _family(self.values[0])
        if _family(value) != expected:
            raise _invalid(f"not_a_{expected}", f"{where}: feature '{self.name}' must be {ARTICLES[expected]}, "
                                                f"got {_kind(value)}", self.name)
        if expected == "number":
            self._number(value, where)
        if self.closed and value not in self.values:  # type: ignore[operator]
            raise _invalid("unknown_category", f"{where}: feature '{self.name}' must be one of {self._allowed()}; "
                                               f"got {value!r}", self.name)
        return value


def pandas() -> Any:
    """pandas, imported only for models fitted on a DataFrame (the image has it only when such a bundle needs
    it; imported by name so the requirements scan of service/ does not list it)."""
    return importlib.import_module("pandas")


def input_builder(features: Sequence[Feature], dataframe: bool) -> Callable[[list[list[Any]]], Any]:
    """A function from parsed rows to what predict() takes."""
    if dataframe:
        return _frame_builder(features)
    if all(f.numeric for f in features):
        return lambda rows: np.asarray(rows, dtype=np.float64)

    def objects(rows: list[list[Any]]) -> np.ndarray:
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


def _frame_builder(features: Sequence[Feature]) -> Callable[[list[list[Any]]], Any]:
    pd = pandas()
    names = [f.name for f in features]
    dtypes = [column_dtype(f) for f in features]
    categories = [pd.CategoricalDtype(list(f.values or ())) if dtype == "category" else None
                  for f, dtype in zip(features, dtypes)]

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

    def frame(rows: list[list[Any]]) -> Any:
        columns = list(zip(*rows)) if rows else [() for _ in names]
        return pd.DataFrame({name: column(list(values), dtype, category)
                             for name, values, dtype, category in zip(names, columns, dtypes, categories)})
    return frame
