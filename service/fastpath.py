"""The exact fast path: scikit-learn's own compiled routines, called on the matrix the service already validated.

A scikit-learn call spends most of a one-row prediction on checks the service has already made (dtype, shape,
feature names, finiteness) and on dispatch; the arithmetic is a small part. `compile_model` turns a fitted model
into the same arithmetic without those checks, for the families users ship: pipelines of scalers and numeric
imputers ending in a linear model, a tree, a forest or gradient boosting (both kinds). It raises `Unsupported`
(with the reason) for anything else. The Predictor switches it on only after it has reproduced `model.predict`
and `predict_proba` bit for bit on probe rows, and still sends to `model.predict` every row the fast path cannot
take (values that are not finite where the estimator needs them finite, or overflow float32 for the trees), so
scikit-learn's own error messages and missing-value handling stay as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Outcome = tuple[np.ndarray, np.ndarray | None]  # predictions, probabilities


class Unsupported(Exception):
    """The model (or one of its steps) has no exact fast path; the message says which and why."""


class Declined(Exception):
    """These rows are not for the fast path (e.g. not finite); the model itself answers them."""


@dataclass(frozen=True)
class FastPath:
    """Transform steps then a final estimator, each a plain function of a 2-D array."""

    steps: tuple[Callable[[np.ndarray], np.ndarray], ...]
    final: Callable[[np.ndarray], Outcome]
    names: tuple[str, ...]

    @property
    def description(self) -> str:
        return " -> ".join(self.names)

    def __call__(self, matrix: np.ndarray) -> Outcome:
        """The model's answer for `matrix` (float64, rows by features); Declined for rows it cannot take."""
        for step in self.steps:
            matrix = step(matrix)
        return self.final(matrix)


def _finite(matrix: np.ndarray, allow_nan: bool = False) -> np.ndarray:
    """`matrix` itself when every value is finite (or NaN, if allowed); Declined otherwise."""
    if np.isfinite(matrix).all():
        return matrix
    if allow_nan and not np.isinf(matrix).any():
        return matrix
    raise Declined("values that are not finite")


def _float32(matrix: np.ndarray) -> np.ndarray:
    """The trees' input dtype (float32, C order), as their own validation converts it; Declined on overflow."""
    with np.errstate(over="ignore"):  # an overflow becomes inf, which is declined
        return _finite(np.ascontiguousarray(matrix, dtype=np.float32))


def _named(estimator: Any) -> str:
    return type(estimator).__name__


def _exact_type(estimator: Any, *names: str) -> bool:
    """Whether the estimator is one of these scikit-learn classes itself (a subclass may change the arithmetic)."""
    kind = type(estimator)
    return kind.__module__.startswith("sklearn.") and kind.__name__ in names


# Transform steps: the same in-place operations scikit-learn's transform() runs on its float64 copy.

def _standard_scaler(scaler: Any) -> Callable[[np.ndarray], np.ndarray]:
    mean, scale = scaler.mean_ if scaler.with_mean else None, scaler.scale_ if scaler.with_std else None

    def transform(matrix: np.ndarray) -> np.ndarray:
        matrix = np.array(_finite(matrix, allow_nan=True), dtype=np.float64)
        if mean is not None:
            matrix -= mean
        if scale is not None:
            matrix /= scale
        return matrix
    return transform


def _min_max_scaler(scaler: Any) -> Callable[[np.ndarray], np.ndarray]:
    low, high = scaler.feature_range

    def transform(matrix: np.ndarray) -> np.ndarray:
        matrix = np.array(_finite(matrix, allow_nan=True), dtype=np.float64)
        matrix *= scaler.scale_
        matrix += scaler.min_
        if scaler.clip:
            np.clip(matrix, low, high, out=matrix)
        return matrix
    return transform


def _max_abs_scaler(scaler: Any) -> Callable[[np.ndarray], np.ndarray]:
    def transform(matrix: np.ndarray) -> np.ndarray:
        matrix = np.array(_finite(matrix, allow_nan=True), dtype=np.float64)
        matrix /= scaler.scale_
        return matrix
    return transform


def _simple_imputer(imputer: Any) -> Callable[[np.ndarray], np.ndarray]:
    statistics = np.asarray(imputer.statistics_)
    if imputer.add_indicator:
        raise Unsupported("SimpleImputer(add_indicator=True)")
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise Unsupported(f"SimpleImputer(missing_values={imputer.missing_values!r}) (only NaN)")
    if statistics.dtype.kind != "f" or np.isnan(statistics).any():
        raise Unsupported("SimpleImputer with a column it drops or a non-numeric statistic")

    def transform(matrix: np.ndarray) -> np.ndarray:
        matrix = _finite(matrix, allow_nan=True)
        return np.where(np.isnan(matrix), statistics, matrix)
    return transform


TRANSFORMS: dict[str, Callable[[Any], Callable[[np.ndarray], np.ndarray]]] = {
    "StandardScaler": _standard_scaler,
    "MinMaxScaler": _min_max_scaler,
    "MaxAbsScaler": _max_abs_scaler,
    "SimpleImputer": _simple_imputer,
}


# Final estimators.

def _classes(estimator: Any, encoded: np.ndarray) -> np.ndarray:
    return estimator.classes_.take(encoded, axis=0)


def _tree(tree: Any, want_proba: bool) -> Callable[[np.ndarray], Outcome]:
    n_classes = getattr(tree, "n_classes_", None)

    def predict(matrix: np.ndarray) -> Outcome:
        values = tree.tree_.predict(_float32(matrix))
        if n_classes is None:
            return values[:, 0], None
        proba = values[:, :n_classes]
        return _classes(tree, np.argmax(proba, axis=1)), proba if want_proba else None
    return predict


def _forest(forest: Any, want_proba: bool) -> Callable[[np.ndarray], Outcome]:
    trees = [estimator.tree_ for estimator in forest.estimators_]
    n_classes = getattr(forest, "n_classes_", None)
    if forest.n_jobs not in (None, 1):  # its own threads sum the trees in varying order
        raise Unsupported(f"{_named(forest)}(n_jobs={forest.n_jobs})")

    def predict(matrix: np.ndarray) -> Outcome:
        matrix = _float32(matrix)
        if n_classes is None:
            total = np.zeros(matrix.shape[0], dtype=np.float64)
            for tree in trees:
                total += tree.predict(matrix)[:, 0]
            total /= len(trees)
            return total, None
        proba = np.zeros((matrix.shape[0], n_classes), dtype=np.float64)
        for tree in trees:
            proba += tree.predict(matrix)[:, :n_classes]
        proba /= len(trees)
        return _classes(forest, np.argmax(proba, axis=1)), proba if want_proba else None
    return predict


def _gradient_boosting(model: Any, want_proba: bool) -> Callable[[np.ndarray], Outcome]:
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble._gradient_boosting import predict_stages

    if not (isinstance(model.init_, str) and model.init_ == "zero") and type(model.init_) not in (DummyRegressor,
                                                                                                  DummyClassifier):
        raise Unsupported(f"{_named(model)} with init={_named(model.init_)} (its start varies by row)")
    zeros = np.zeros((1, model.n_features_in_), dtype=np.float32)
    start = model._raw_predict_init(zeros)  # the same for every row: zero or the init estimator's constant
    classifier = hasattr(model, "classes_")

    def predict(matrix: np.ndarray) -> Outcome:
        matrix = _float32(matrix)
        raw = np.repeat(start, matrix.shape[0], axis=0)
        predict_stages(model.estimators_, matrix, model.learning_rate, raw)
        if not classifier:
            return raw.ravel(), None
        decision = raw.ravel() if raw.shape[1] == 1 else raw
        encoded = (decision >= 0).astype(int) if decision.ndim == 1 else np.argmax(decision, axis=1)
        return model.classes_[encoded], model._loss.predict_proba(decision) if want_proba else None
    return predict


def _hist_gradient_boosting(model: Any, want_proba: bool) -> Callable[[np.ndarray], Outcome]:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    if model._preprocessor is not None:
        raise Unsupported(f"{_named(model)} with categorical features")
    threads = _openmp_effective_n_threads()
    classifier = hasattr(model, "classes_")

    def predict(matrix: np.ndarray) -> Outcome:
        matrix = np.ascontiguousarray(_finite(matrix, allow_nan=True), dtype=np.float64)
        raw = np.zeros((matrix.shape[0], model.n_trees_per_iteration_), dtype=model._baseline_prediction.dtype,
                       order="F")
        raw += model._baseline_prediction
        model._predict_iterations(matrix, model._predictors, raw, False, threads)
        if not classifier:
            return model._loss.link.inverse(raw.ravel()), None
        encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
        return model.classes_[encoded], model._loss.predict_proba(raw) if want_proba else None
    return predict


def _linear_regressor(model: Any) -> Callable[[np.ndarray], Outcome]:
    coef = model.coef_ if model.coef_.ndim == 1 else model.coef_.T
    if coef.ndim != 1 and coef.shape[1] != 1:
        raise Unsupported(f"{_named(model)} with several targets")

    def predict(matrix: np.ndarray) -> Outcome:
        return _finite(matrix) @ coef + model.intercept_, None
    return predict


def _linear_classifier(model: Any, want_proba: bool) -> Callable[[np.ndarray], Outcome]:
    from sklearn.utils._array_api import _expit
    from sklearn.utils.extmath import softmax

    if want_proba and not _exact_type(model, "LogisticRegression"):
        raise Unsupported(f"{_named(model)}.predict_proba")
    coef = model.coef_.T if model.coef_.ndim == 2 else model.coef_

    def predict(matrix: np.ndarray) -> Outcome:
        scores = _finite(matrix) @ coef + model.intercept_
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        encoded = (scores > 0).astype(np.int64) if scores.ndim == 1 else np.argmax(scores, axis=1)
        if not want_proba:
            return _classes(model, encoded), None
        if scores.ndim == 1:
            positive = _expit(scores.copy())
            proba = np.stack([1 - positive, positive], axis=1)
        else:
            proba = softmax(scores.copy(), copy=False)
        return _classes(model, encoded), proba
    return predict


LINEAR_REGRESSORS = ("LinearRegression", "Ridge", "Lasso", "ElasticNet", "Lars", "LassoLars", "BayesianRidge",
                     "ARDRegression", "RidgeCV", "LassoCV", "ElasticNetCV", "HuberRegressor")
LINEAR_CLASSIFIERS = ("LogisticRegression", "LogisticRegressionCV", "RidgeClassifier", "RidgeClassifierCV",
                      "LinearSVC", "SGDClassifier", "Perceptron", "PassiveAggressiveClassifier")


def _final(model: Any, want_proba: bool) -> Callable[[np.ndarray], Outcome]:
    name = _named(model)
    if getattr(model, "n_outputs_", 1) != 1:
        raise Unsupported(f"{name} with several outputs")
    if _exact_type(model, "DecisionTreeRegressor", "DecisionTreeClassifier", "ExtraTreeRegressor",
                   "ExtraTreeClassifier"):
        return _tree(model, want_proba)
    if _exact_type(model, "RandomForestRegressor", "RandomForestClassifier", "ExtraTreesRegressor",
                   "ExtraTreesClassifier"):
        return _forest(model, want_proba)
    if _exact_type(model, "GradientBoostingRegressor", "GradientBoostingClassifier"):
        return _gradient_boosting(model, want_proba)
    if _exact_type(model, "HistGradientBoostingRegressor", "HistGradientBoostingClassifier"):
        return _hist_gradient_boosting(model, want_proba)
    if _exact_type(model, *LINEAR_REGRESSORS):
        return _linear_regressor(model)
    if _exact_type(model, *LINEAR_CLASSIFIERS):
        return _linear_classifier(model, want_proba)
    raise Unsupported(f"no fast path for {name}")


def compile_model(model: Any, want_proba: bool) -> FastPath:
    """The fast path for `model` (a Pipeline or an estimator) taking float64 matrices; Unsupported otherwise."""
    steps = list(model.steps) if _exact_type(model, "Pipeline") else [("", model)]
    transforms, names = [], []
    for _, step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        name = _named(step)
        if not _exact_type(step, *TRANSFORMS):
            raise Unsupported(f"no fast path for the step {name}")
        transforms.append(TRANSFORMS[name](step))
        names.append(name)
    final = steps[-1][1]
    if final is None or final == "passthrough":
        raise Unsupported("the pipeline ends without an estimator")
    return FastPath(tuple(transforms), _final(final, want_proba), (*names, _named(final)))
