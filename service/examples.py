"""Runnable /predict examples, one per accepted input shape, answered by the live model at start-up."""
from __future__ import annotations

from typing import Any

from modelcard.features import ValueProblem

from .bundle import BundleError, ModelBundle
from .errors import ApiError
from .inputs import parse_rows
from .predictor import Predictor


def example_records(bundle: ModelBundle) -> list[dict[str, Any]]:
    """Two records: the card's own examples (real rows of the training sample, when derived), else typical
    values of each feature."""
    examples = bundle.card.get("examples") or []
    records = [dict(record) for record in examples[:2]]
    for index, share in enumerate((0.25, 0.75)[len(records):], start=len(records)):
        records.append({f.name: f.typical(share, index) for f in bundle.features})
    return records


def build_examples(bundle: ModelBundle, predictor: Predictor) -> list[dict[str, Any]]:
    """Each example's response comes from parsing its request and predicting, exactly as /predict does.
    This is also the warm-up: a model that cannot answer its own examples cannot be served (BundleError)."""
    first, second = example_records(bundle)[:2]
    shapes = [
        ("record", "one record: an object of feature values", first),
        ("records", "a list of records, answered in the same order", [first, second]),
        ("columns", "pandas' column orientation (DataFrame.to_json()), as in the book",
         {name: {"0": first[name], "1": second[name]} for name in first}),
    ]
    examples = []
    for name, description, body in shapes:
        try:
            rows = parse_rows(body, bundle.features, max_rows=2)
            response = predictor.predict(rows.values, rows.labels)
        except (ApiError, ValueProblem) as exc:
            raise BundleError(f"{bundle.path}: the model cannot answer its example ({name}): {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - the estimator's own failure, whatever its type
            message = " ".join(str(exc).split())
            raise BundleError(f"{bundle.path}: the model failed on its example ({name}): "
                              f"{type(exc).__name__}: {message}") from None
        examples.append({"name": name, "description": description, "request": body, "response": response})
    return examples
