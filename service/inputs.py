"""Turn a /predict payload into rows of typed values in the model's feature order, or say precisely why not.

Accepted shapes:
- one record:            {"age": 59, "bmi": 32.1, ...}
- a list of records:     [{"age": 59, ...}, {"age": 48, ...}]
- pandas' column shape:  {"age": {"0": 59, "1": 48}, "bmi": {"0": 32.1, "1": 21.6}, ...}
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from flask import request

from .errors import ApiError
from .features import Feature


def _invalid(code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(422, code, message, field)


def read_json_body() -> Any:
    """The request's body as strict JSON; 415 unless it is declared as JSON."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       f"send Content-Type: application/json (got {request.mimetype or 'none'!r})")
    return decode_json(request.get_data(cache=False))


def decode_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity tokens, no duplicate keys."""
    def reject_constant(token: str) -> Any:
        raise ApiError(422, "not_finite", f"{token} is not allowed: send finite numbers only")

    def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ApiError(400, "invalid_json", f"duplicate key '{key}' in the JSON body", key)
            result[key] = value
        return result

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 text") from None
    if not text.strip():
        raise ApiError(400, "invalid_json", "the body is empty: send a JSON record, list of records or columns")
    try:
        return json.loads(text, parse_constant=reject_constant, object_pairs_hook=reject_duplicates)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None


def _row(record: Any, features: Sequence[Feature], where: str) -> list[Any]:
    if not isinstance(record, dict):
        raise _invalid("invalid_record", f"{where}: expected an object of feature values, "
                                         f"got {type(record).__name__}")
    for feature in features:
        if feature.name not in record:
            raise _invalid("missing_feature", f"{where}: missing feature '{feature.name}'", feature.name)
    if len(record) != len(features):
        names = {feature.name for feature in features}
        unknown = next(name for name in record if name not in names)
        raise _invalid("unknown_feature", f"{where}: unknown feature '{unknown}' "
                                          f"(expected: {', '.join(f.name for f in features)})", unknown)
    return [feature.parse(record[feature.name], where) for feature in features]


def _column_records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """pandas' column orientation {"feature": {"index": value}} to records in index order."""
    index: list[str] | None = None
    for name, column in columns.items():
        if not isinstance(column, dict):
            raise _invalid("mixed_shape", f"column '{name}' is not an object of index -> value; "
                                          f"send every column in the same shape", name)
        if index is None:
            index = list(column)
        elif set(column) != set(index):
            raise _invalid("inconsistent_index", f"column '{name}' has a different set of row "
                                                 f"indexes from the other columns", name)
    assert index is not None
    if all(key.lstrip("-").isdigit() for key in index):
        index.sort(key=int)
    return [{name: column[key] for name, column in columns.items()} for key in index]


def parse_rows(payload: Any, features: Sequence[Feature], max_rows: int) -> list[list[Any]]:
    """Rows of typed values (see service/features.py), in input order, for a payload of any accepted shape."""
    if isinstance(payload, dict) and payload and any(isinstance(v, dict) for v in payload.values()):
        records = _column_records(payload)
        label = "row"
    elif isinstance(payload, list):
        records, label = payload, "record"
    elif isinstance(payload, dict):
        records, label = [payload], "record"
    else:
        raise _invalid("invalid_shape", f"expected a record, a list of records or columns, "
                                        f"got {type(payload).__name__}")
    if not records or records == [{}]:
        raise _invalid("empty_input", "no rows to predict: send at least one record")
    if len(records) > max_rows:
        raise ApiError(413, "too_many_rows", f"{len(records)} rows in one request; the limit is {max_rows} "
                                             f"(split the request or raise SERVICE_MAX_ROWS)")
    return [_row(record, features, f"{label} {position}") for position, record in enumerate(records)]
