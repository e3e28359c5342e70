"""A sample of the training data (CSV with a header): each column's type, missing values and range, read the way
pandas.read_csv would type it, with the standard library only (the image has pandas only when a model needs it).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_ROWS = 100_000  # rows read; a sample needs no more
# pandas.read_csv's default missing-value markers
MISSING = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
           "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
TRUE, FALSE = {"True", "TRUE", "true"}, {"False", "FALSE", "false"}
INTEGER = re.compile(r"^[+-]?\d+$")


class SampleError(Exception):
    """The sample cannot be read; one line."""


@dataclass(frozen=True)
class Column:
    """One column of the sample: its type, whether values are missing, and its typed values (None if missing)."""

    name: str
    type: str  # integer, number, boolean or string
    values: list[Any]
    texts: list[str]

    def as_type(self, kind: str) -> Column:
        """The same cells typed as `kind` (e.g. text the model knows as strings, though it looks like numbers)."""
        return Column(self.name, kind, [None if text in MISSING else typed(text, kind) for text in self.texts],
                      self.texts)

    @property
    def nullable(self) -> bool:
        return any(value is None for value in self.values)

    @property
    def present(self) -> list[Any]:
        return [value for value in self.values if value is not None]


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def column_type(texts: list[str]) -> str:
    """integer, number, boolean or string for the non-missing cells of a column."""
    if texts and all(INTEGER.match(text) for text in texts):
        return "integer"
    if texts and all(_is_float(text) for text in texts):
        return "number"
    if texts and all(text in TRUE or text in FALSE for text in texts):
        return "boolean"
    return "string"


def typed(text: str, kind: str) -> Any:
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return text in TRUE
    return text


def read_sample(path: Path) -> tuple[dict[str, Column], int]:
    """The columns by name, and the number of rows read (at most MAX_ROWS)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise SampleError(f"sample {path.name} is empty: give a CSV file with a header row")
            if len(set(header)) != len(header):
                raise SampleError(f"sample {path.name}: the header repeats a column name")
            cells: list[list[str]] = [[] for _ in header]
            count = 0
            for line, row in enumerate(reader, start=2):
                if count >= MAX_ROWS:
                    break
                if not row:
                    continue
                if len(row) != len(header):
                    raise SampleError(f"sample {path.name} line {line}: {len(row)} cells, the header has "
                                      f"{len(header)}")
                for column, text in zip(cells, row, strict=True):
                    column.append(text)
                count += 1
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SampleError(f"cannot read the sample {path}: {exc}") from None
    if not count:
        raise SampleError(f"sample {path.name} has a header but no rows")
    columns = {}
    for name, texts in zip(header, cells, strict=True):
        kind = column_type([text for text in texts if text not in MISSING])
        values = [None if text in MISSING else typed(text, kind) for text in texts]
        columns[name] = Column(name, kind, values, texts)
    return columns, count
