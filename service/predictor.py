"""Predictions as JSON-ready dicts, the same code path for /predict, the examples and the warm-up."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .bundle import ModelBundle
from .errors import ApiError


def _plain(value: Any) -> Any:
    """numpy scalars to the Python values JSON encodes exactly (float64 round-trips through repr)."""
    return value.item() if isinstance(value, np.generic) else value


class Predictor:
    """Calls the estimator on rows already validated and ordered like the card's features."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.classes = bundle.classes
        self.has_proba = bundle.is_classifier and callable(getattr(bundle.model, "predict_proba", None))

    def predict(self, rows: list[list[float]]) -> dict[str, Any]:
        """Predictions (and probabilities); a 422 when the estimator refuses the values or answers non-finite."""
        matrix = np.asarray(rows, dtype=np.float64)
        try:
            predictions = self.bundle.model.predict(matrix)
            probabilities = self.bundle.model.predict_proba(matrix) if self.has_proba else None
        except ValueError as exc:  # scikit-learn's own input validation, e.g. values too large for float32
            raise ApiError(422, "rejected_by_model", f"the model rejected the input: {exc}") from None
        result: dict[str, Any] = {
            "model": self.bundle.card["name"],
            "model_version": self.bundle.card["version"],
            "predictions": [_plain(value) for value in predictions],
        }
        if probabilities is not None:
            result["probabilities"] = [
                {str(label): float(p) for label, p in zip(self.classes, row)} for row in probabilities
            ]
        numbers = [v for v in result["predictions"] if isinstance(v, float)]
        numbers += [p for row in result.get("probabilities", []) for p in row.values()]
        if not all(math.isfinite(v) for v in numbers):
            raise ApiError(422, "rejected_by_model", "the model's answer for these values is not a finite number")
        return result
