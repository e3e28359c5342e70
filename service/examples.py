"""Runnable /predict examples, one per accepted input shape, answered by the live model at start-up."""
from __future__ import annotations

from typing import Any

from .bundle import ModelBundle
from .inputs import parse_rows
from .predictor import Predictor


def example_records(bundle: ModelBundle) -> list[dict[str, float]]:
    """Two records: the card's own example rows, or else the 25% and 75% points of each feature's range."""
    if len(bundle.card.get("examples") or []) >= 2:
        return [dict(record) for record in bundle.card["examples"][:2]]
    records = []
    for share in (0.25, 0.75):
        records.append({f["name"]: round(f["min"] + share * (f["max"] - f["min"]), 4)
                        for f in bundle.card["features"]})
    return records


def build_examples(bundle: ModelBundle, predictor: Predictor) -> list[dict[str, Any]]:
    """Each example's response comes from parsing its request and predicting, exactly as /predict does."""
    first, second = example_records(bundle)[:2]
    shapes = [
        ("record", "one record: an object of feature values", first),
        ("records", "a list of records, answered in the same order", [first, second]),
        ("columns", "pandas' column orientation (DataFrame.to_json()), as in the book",
         {name: {"0": first[name], "1": second[name]} for name in first}),
    ]
    features = bundle.feature_names
    examples = []
    for name, description, body in shapes:
        rows = parse_rows(body, features, max_rows=2)
        examples.append({"name": name, "description": description, "request": body,
                         "response": predictor.predict(rows)})
    return examples
