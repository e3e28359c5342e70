"""Predictions as JSON-ready dicts, the same code path for /predict, the examples and the warm-up."""
from __future__ import annotations

from typing import Any

import numpy as np

from .bundle import ModelBundle


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
        matrix = np.asarray(rows, dtype=np.float64)
        result: dict[str, Any] = {
            "model": self.bundle.card["name"],
            "model_version": self.bundle.card["version"],
            "predictions": [_plain(value) for value in self.bundle.model.predict(matrix)],
        }
        if self.has_proba:
            probabilities = self.bundle.model.predict_proba(matrix)
            result["probabilities"] = [
                {str(label): float(p) for label, p in zip(self.classes, row)} for row in probabilities
            ]
        return result
