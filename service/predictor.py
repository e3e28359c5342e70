"""Predictions as JSON-ready dicts, the same code path for /predict, the examples and the warm-up."""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import numpy as np

from .batching import MicroBatcher
from .bundle import ModelBundle
from .errors import ApiError

log = logging.getLogger(__name__)
Outcome = tuple[np.ndarray, np.ndarray | None]  # predictions, probabilities
PROBE_ROWS = 32  # rows spread over the card's training ranges, for the start-up batching check


def _plain(value: Any) -> Any:
    """numpy scalars to the Python values JSON encodes exactly (float64 round-trips through repr)."""
    return value.item() if isinstance(value, np.generic) else value


class Predictor:
    """Calls the estimator on rows already validated and ordered like the card's features."""

    def __init__(self, bundle: ModelBundle, batch_max_rows: int = 0, batch_max_wait: float = 0.0):
        self.bundle = bundle
        self.classes = bundle.classes
        self.has_proba = bundle.is_classifier and callable(getattr(bundle.model, "predict_proba", None))
        self.batcher: MicroBatcher[Outcome] | None = None
        if batch_max_rows > 1:
            if self._stacking_is_exact():
                self.batcher = MicroBatcher(self.infer, self._split, batch_max_rows, batch_max_wait)
            else:
                log.warning("micro-batching is off: this model's answers for rows predicted together differ "
                            "from its answers for the same rows predicted alone")

    def infer(self, matrix: np.ndarray) -> Outcome:
        """The estimator itself, called once on `matrix`."""
        predictions = self.bundle.model.predict(matrix)
        probabilities = self.bundle.model.predict_proba(matrix) if self.has_proba else None
        return predictions, probabilities

    @staticmethod
    def _split(outcome: Outcome, sizes: list[int]) -> list[Outcome]:
        cuts = np.cumsum(sizes)[:-1]
        predictions, probabilities = outcome
        parts = np.split(predictions, cuts)
        probability_parts = np.split(probabilities, cuts) if probabilities is not None else [None] * len(sizes)
        return list(zip(parts, probability_parts))

    def _stacking_is_exact(self) -> bool:
        """Whether rows predicted together get exactly (bit for bit) the answers they get one by one.

        True for the estimators whose rows are independent (trees, ensembles, linear models, pipelines of
        them), checked here on the live model rather than assumed."""
        features = self.bundle.card["features"]
        rng = np.random.default_rng(0)
        rows = np.column_stack([rng.uniform(f["min"], f["max"], PROBE_ROWS) for f in features])
        together = self._split(self.infer(rows), [1] * PROBE_ROWS)
        for row, (predictions, probabilities) in zip(rows, together):
            alone_predictions, alone_probabilities = self.infer(row[np.newaxis, :])
            if not np.array_equal(predictions, alone_predictions):
                return False
            if probabilities is not None and not np.array_equal(probabilities, alone_probabilities):
                return False
        return True

    def coming(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the reading and checking of a request that will call predict(): see MicroBatcher.coming."""
        return self.batcher.coming() if self.batcher else contextlib.nullcontext()

    def predict(self, rows: list[list[float]]) -> dict[str, Any]:
        """Predictions (and probabilities); a 422 when the estimator refuses the values or answers non-finite."""
        matrix = np.asarray(rows, dtype=np.float64)
        try:
            predictions, probabilities = (self.batcher or self.infer)(matrix)
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
