"""Predictions as JSON-ready dicts, the same code path for /predict, the examples and the warm-up."""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any
from collections.abc import Callable, Collection

import numpy as np

from modelcard.card import plain
from modelcard.features import Feature

from .batching import MicroBatcher
from .bundle import ModelBundle
from .errors import ApiError
from .frames import Values
from .fastpath import Declined, FastPath, Unsupported, compile_frame_model, compile_model

log = logging.getLogger(__name__)
Outcome = tuple[np.ndarray, np.ndarray | None]  # predictions, probabilities
PROBE_ROWS = 32  # rows spread over the card's features, for the start-up checks (fast path, batching)
MODEL_PATH = "model.predict"
FAST_PATH = "fast"
EXTRA_OUTPUTS = ("decision_function", "score_samples")  # answered when asked for; predict (and predict_proba) always
DECLINED, FAILED = "declined", "failed"  # why model.predict answered rows the fast path was on for


def probe_value(feature: Feature, rng: np.random.Generator, index: int) -> Any:
    """A JSON value for `feature`, spread over its range or its known values; null now and then if nullable."""
    if feature.nullable and index % 5 == 4:
        return None
    return feature.typical(float(rng.uniform()), int(rng.integers(1 << 16)))


class Predictor:
    """Calls the estimator on rows already validated and ordered like the card's features."""

    def __init__(self, bundle: ModelBundle, batch_max_rows: int = 0, batch_max_wait: float = 0.0,
                 fast_path: bool = True, on_fallback: Callable[[str], None] | None = None):
        """`on_fallback(reason)` is called each time model.predict answers rows the fast path was on for
        (DECLINED: values it does not take, e.g. not finite; FAILED: it raised anything else)."""
        self.bundle = bundle
        self.on_fallback = on_fallback
        self.fallbacks_logged: set[str] = set()
        self.classes = bundle.classes
        self.has_proba = bundle.is_classifier and callable(getattr(bundle.model, "predict_proba", None))
        self.extras = self._extra_outputs()
        self.fast: FastPath | None = None
        self.inference = self._choose_path(fast_path)
        log.info("inference: %s (%s)", self.inference["path"], self.inference["why"], extra=self.inference)
        self.batcher: MicroBatcher[Outcome] | None = None
        if batch_max_rows > 1:
            if self._stacking_is_exact():
                self.batcher = MicroBatcher(self.infer, self._split, batch_max_rows, batch_max_wait)
            else:
                log.warning("micro-batching is off: this model's answers for rows predicted together differ "
                            "from its answers for the same rows predicted alone")

    def infer(self, rows: Collection[Any]) -> Outcome:
        """The answer for `rows`: the fast path when it is on and takes them, else the estimator itself."""
        if self.fast is not None:
            try:
                return self.fast(self._fast_input(rows))
            except Declined as exc:
                self._fell_back(DECLINED, exc)
            except Exception as exc:  # noqa: BLE001 - anything else: the model answers (or says why not)
                self._fell_back(FAILED, exc)
        return self._model_infer(self.bundle.to_input(rows))

    def _fell_back(self, reason: str, exc: Exception) -> None:
        """Counted each time; logged the first time for each reason (a warning when the fast path failed)."""
        if self.on_fallback is not None:
            self.on_fallback(reason)
        if reason not in self.fallbacks_logged:
            self.fallbacks_logged.add(reason)  # two threads at once may both log: one line more, once
            log.log(logging.WARNING if reason == FAILED else logging.INFO,
                    "fast path %s rows (%s: %s); model.predict answered them, as it will such rows from now on, "
                    "counted in fast_path_fallbacks_total, not logged", reason, type(exc).__name__, exc,
                    extra={"reason": reason})

    def _extra_outputs(self) -> dict[str, list[int]]:
        """The model's methods of EXTRA_OUTPUTS that answer a probe row, each with its shape beyond the row
        ([] for a number per row, [classes] for a multi-class decision_function)."""
        found: dict[str, list[int]] = {}
        methods = [method for method in EXTRA_OUTPUTS if callable(getattr(self.bundle.model, method, None))]
        rows = self._probe_rows()[:2] if methods else []
        for method in methods:
            try:
                answer = np.asarray(getattr(self.bundle.model, method)(self.bundle.to_input(rows)))
            except Exception as exc:  # noqa: BLE001 - a method that fails on the probe rows is not offered
                log.info("%s is not served: it failed on the probe rows (%s: %s)", method, type(exc).__name__, exc)
                continue
            found[method] = list(answer.shape[1:])
        return found

    def _fast_input(self, rows: Collection[Any]) -> Any:
        """What the fast path takes: the rows themselves for a DataFrame model, else the float64 array."""
        return rows if self.bundle.dataframe else self.bundle.to_input(rows)

    def _model_infer(self, model_input: Any) -> Outcome:
        """The estimator itself, called once (on the array or DataFrame it was fitted on)."""
        predictions = np.asarray(self.bundle.model.predict(model_input))
        if predictions.ndim != 1:
            raise TypeError(f"the model answers {predictions.shape[1:]} values per row; only one output per row "
                            f"is served")
        probabilities = self.bundle.model.predict_proba(model_input) if self.has_proba else None
        return predictions, probabilities

    def _named_by(self, message: str, rows: Values) -> str | None:
        """The one text feature whose value in these rows the model's error message quotes, if there is one."""
        named = {feature.name for position, feature in enumerate(self.bundle.features) if not feature.numeric
                 for row in rows if isinstance(row[position], str) and len(row[position]) > 2
                 and row[position] in message}
        return named.pop() if len(named) == 1 else None

    @staticmethod
    def _split(outcome: Outcome, sizes: list[int]) -> list[Outcome]:
        cuts = np.cumsum(sizes)[:-1]
        predictions, probabilities = outcome
        parts = np.split(predictions, cuts)
        probability_parts = np.split(probabilities, cuts) if probabilities is not None else [None] * len(sizes)
        return list(zip(parts, probability_parts, strict=True))

    def _probe_rows(self) -> list[list[Any]]:
        """PROBE_ROWS parsed rows spread over the card's features (nulls now and then where allowed)."""
        rng = np.random.default_rng(0)
        return [[f.parse(probe_value(f, rng, i), "probe") for f in self.bundle.features] for i in range(PROBE_ROWS)]

    def _choose_path(self, wanted: bool) -> dict[str, str]:
        """Switch the fast path on if it exists for this model and reproduces it bit for bit on the probe rows,
        each alone and all together; what serves the model, and why."""
        if not wanted:
            return {"path": MODEL_PATH, "why": "the fast path is switched off (SERVICE_FAST_PATH=0)"}
        if not self.bundle.dataframe and not all(f.numeric for f in self.bundle.features):
            given = "a list of texts" if self.bundle.input == "texts" else "an array of text"
            return {"path": MODEL_PATH, "why": f"the fast path takes numbers, or a DataFrame; this model takes {given}"}
        try:
            compile_for = compile_frame_model if self.bundle.dataframe else compile_model
            fast = compile_for(self.bundle.model, self.has_proba)
        except Unsupported as exc:
            return {"path": MODEL_PATH, "why": str(exc)}
        except Exception as exc:  # noqa: BLE001 - an estimator that does not look the way the fast path reads it
            return {"path": MODEL_PATH, "why": f"the fast path could not read the model ({type(exc).__name__}: {exc})"}
        mismatch = self._mismatch(fast, self._probe_rows())
        if mismatch:
            return {"path": MODEL_PATH, "why": f"the fast path ({fast.description}) {mismatch}"}
        self.fast = fast
        return {"path": FAST_PATH, "estimators": fast.description,
                "why": f"scikit-learn's compiled routines reproduced model.predict"
                       f"{' and predict_proba' if self.has_proba else ''} bit for bit on {PROBE_ROWS} probe rows, "
                       f"alone and together"}

    def _mismatch(self, fast: FastPath, rows: list[list[Any]]) -> str:
        """'' when `fast` gives what the model gives on every probe row it takes, alone and stacked; else what
        differs."""
        def model(chosen: list[list[Any]]) -> Outcome:
            return self._model_infer(self.bundle.to_input(chosen))

        taken = []
        for row in rows:
            try:
                mine = fast(self._fast_input([row]))
            except Declined:
                continue  # the model answers this row itself
            except Exception as exc:  # noqa: BLE001 - a fast path that fails is not used
                return f"failed on a probe row ({type(exc).__name__}: {exc})"
            try:
                theirs = model([row])
            except Exception:  # noqa: BLE001 - the model refuses a row the fast path answers
                return f"answers a probe row that model.predict refuses: {row}"
            if not _same(mine, theirs):
                return f"differs from model.predict on the probe row {row}"
            taken.append(row)
        if not taken:
            return "declined every probe row"
        try:
            same = _same(fast(self._fast_input(taken)), model(taken))
        except Exception as exc:  # noqa: BLE001 - a fast path that fails on its probe rows is not used
            return f"failed on the probe rows predicted together ({type(exc).__name__}: {exc})"
        return "" if same else f"differs from model.predict on the {len(taken)} probe rows predicted together"

    def _stacking_is_exact(self) -> bool:
        """Whether rows predicted together get exactly (bit for bit) the answers they get one by one.

        True for the estimators whose rows are independent (trees, ensembles, linear models, pipelines of
        them), checked here on the live model rather than assumed. A model that refuses the probe rows is not
        batched."""
        try:
            rows = self._probe_rows()
            together = self._split(self.infer(rows), [1] * PROBE_ROWS)
            alone = [self.infer([row]) for row in rows]
        except Exception as exc:  # noqa: BLE001 - any failure here only means: not batched
            log.info("micro-batching check skipped: the model refused the probe rows (%s)", exc)
            return False
        for (predictions, probabilities), (alone_predictions, alone_probabilities) in zip(together, alone, strict=True):
            if not np.array_equal(predictions, alone_predictions):
                return False
            if probabilities is not None and (alone_probabilities is None
                                              or not np.array_equal(probabilities, alone_probabilities)):
                return False
        return True

    @property
    def output_names(self) -> list[str]:
        """Every output this model answers: predict, predict_proba (a classifier that has it), EXTRA_OUTPUTS."""
        return ["predict", *(["predict_proba"] if self.has_proba else []), *self.extras]

    def asked(self, names: list[Any]) -> tuple[str, ...]:
        """The EXTRA_OUTPUTS among `names` (each once); 422 unknown_output for a name this model does not answer."""
        unknown = [name for name in names if not isinstance(name, str) or name not in self.output_names]
        if unknown:
            raise ApiError(422, "unknown_output", f"unknown output {unknown[0]!r}: this model has "
                                                  f"{', '.join(self.output_names)}")
        return tuple(name for name in dict.fromkeys(names) if name in self.extras)

    def coming(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the reading and checking of a request that will call predict(): see MicroBatcher.coming."""
        return self.batcher.coming() if self.batcher else contextlib.nullcontext()

    def predict(self, rows: Values, index: list[Any] | None = None,
                outputs: tuple[str, ...] = ()) -> dict[str, Any]:
        """Predictions (and probabilities), with the rows' `index` labels if given, and the other `outputs` asked
        for (EXTRA_OUTPUTS the model has); a 422 when the estimator refuses the values or answers non-finite."""
        extra: dict[str, Any] = {}
        try:
            predictions, probabilities = (self.batcher or self.infer)(rows)
            if outputs:
                model_input = self.bundle.to_input(rows)
                extra = {name: np.asarray(getattr(self.bundle.model, name)(model_input), dtype=np.float64).tolist()
                         for name in outputs}
        except ValueError as exc:  # scikit-learn's validation (values too large for float32), or the user's own
            message = " ".join(str(exc).split())  # code refusing a value (pandas' DateParseError is a ValueError)
            raise ApiError(422, "rejected_by_model", f"the model rejected the input: {message}",
                           self._named_by(message, rows)) from None
        result: dict[str, Any] = {
            "model": self.bundle.card["name"],
            "model_version": self.bundle.card["version"],
            **({"index": index} if index is not None else {}),
            "predictions": _listed(predictions),
        }
        if probabilities is not None:
            result["probabilities"] = [
                {str(label): float(p) for label, p in zip(self.classes or (), row, strict=True)}
                for row in probabilities
            ]
        result.update(extra)
        numeric = _numeric(predictions)
        arrays = [predictions] if numeric else []  # checked at C speed; labels of other types one by one
        arrays += ([probabilities] if probabilities is not None else []) + list(extra.values())
        labels = [] if numeric else [v for v in result["predictions"] if isinstance(v, float)]
        if not (all(np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in arrays)
                and all(math.isfinite(v) for v in labels)):
            raise ApiError(422, "rejected_by_model", "the model's answer for these values is not a finite number")
        return result


def _numeric(predictions: Any) -> bool:
    return isinstance(predictions, np.ndarray) and predictions.dtype.kind in "biuf"


def _listed(predictions: Any) -> list[Any]:
    """The predictions as JSON values: a numeric array's own tolist() (the Python values plain() gives, in one
    call), else one value at a time (labels of any type)."""
    if _numeric(predictions):
        return predictions.tolist()
    return [plain(value) for value in predictions]


def _same(one: Outcome, other: Outcome) -> bool:
    """Bit for bit: the same dtypes, shapes and values (NaN where the other has NaN)."""
    for mine, theirs in zip(one, other, strict=True):
        if mine is None or theirs is None:
            if mine is not theirs:
                return False
        elif mine.dtype != theirs.dtype or mine.shape != theirs.shape or mine.tobytes() != theirs.tobytes():
            return False
    return True

