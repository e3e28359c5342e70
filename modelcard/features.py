"""Typed features: a JSON value checked against its card entry and turned into what the model saw in training.

Numbers become float, whole numbers int, booleans bool, text str; a null (for a nullable feature) becomes NaN for
numbers and `null_as` (None or NaN) for text and booleans; a value the feature cannot take is a ValueProblem.
The service's frames.py then arranges the rows for the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence


NAN = float("nan")
INT64 = (-(2 ** 63), 2 ** 63 - 1)
LISTED_VALUES = 20  # allowed values named in an error message
NUMERIC = ("number", "integer", "boolean")


class ValueProblem(ValueError):
    """A value the feature cannot take: a stable `code`, a one-line message naming the feature, the `field`.
    The service answers it as a 422 in its error envelope."""

    def __init__(self, code: str, message: str, field: str):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def _invalid(code: str, message: str, field: str) -> ValueProblem:
    return ValueProblem(code, message, field)


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


def values_type(values: Sequence[Any]) -> str:
    """The type of a list of values (categories, class labels): boolean, integer, number or string."""
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "number"
    return "string"


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
        values = self.values or ()
        return self.type in NUMERIC or (self.type == "category" and bool(values)
                                        and all(isinstance(v, (int, float)) for v in values))

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
        values = self.values or ()
        shown = ", ".join(repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                          for v in values[:LISTED_VALUES])
        more = len(values) - LISTED_VALUES
        return shown + (f" and {more} more (GET /metadata lists them)" if more > 0 else "")

    def parse(self, value: Any, where: str) -> Any:
        """The value the model gets for JSON `value`, or a ValueProblem naming the feature."""
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
        if self.closed and value not in (self.values or ()):
            raise _invalid("unknown_category", f"{where}: feature '{self.name}' must be one of {self._allowed()}; "
                                               f"got {value!r}", self.name)
        return value
