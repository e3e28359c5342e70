"""The exact fast path: scikit-learn's own compiled routines, called on the matrix the service already validated.

A scikit-learn call spends most of a one-row prediction on checks the service has already made (dtype, shape,
feature names, finiteness) and on dispatch; the arithmetic is a small part. `compile_model` turns a fitted model
into the same arithmetic without those checks, for the families users ship: pipelines of scalers and numeric
imputers ending in a linear model, a tree, a forest or gradient boosting (both kinds), and, for a model fitted on
a DataFrame, the same behind a ColumnTransformer of imputers, one-hot encoders and passthrough columns (text and
missing values included; `compile_frame_model`). It raises `Unsupported`
(with the reason) for anything else. The Predictor switches it on only after it has reproduced `model.predict`
and `predict_proba` bit for bit on probe rows, and still sends to `model.predict` every row the fast path cannot
take (values that are not finite where the estimator needs them finite, or overflow float32 for the trees), so
scikit-learn's own error messages and missing-value handling stay as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import numpy as np

Outcome = tuple[np.ndarray, np.ndarray | None]  # predictions, probabilities


class Unsupported(Exception):
    """The model (or one of its steps) has no exact fast path; the message says which and why."""


class Declined(Exception):
    """These rows are not for the fast path (e.g. not finite); the model itself answers them."""


@dataclass(frozen=True)
class FastPath:
    """Transform steps then a final estimator, each a plain function of a 2-D array (the first step of a
    DataFrame model's path takes the rows' values)."""

    steps: tuple[Callable[[Any], np.ndarray], ...]
    final: Callable[[np.ndarray], Outcome]
    names: tuple[str, ...]

    @property
    def description(self) -> str:
        return " -> ".join(self.names)

    def __call__(self, data: Any) -> Outcome:
        """The model's answer for `data` (a float64 matrix, rows by features, or a DataFrame model's rows);
        Declined for rows it cannot take."""
        for step in self.steps:
            data = step(data)
        return self.final(data)


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
    """NaN replaced by the fitted statistics: numbers in a float64 matrix, or text in an object one (a
    DataFrame's text columns, see _column_steps)."""
    statistics = np.asarray(imputer.statistics_)
    if imputer.add_indicator:
        raise Unsupported("SimpleImputer(add_indicator=True)")
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise Unsupported(f"SimpleImputer(missing_values={imputer.missing_values!r}) (only NaN)")
    if statistics.dtype == object:
        if any(value is None or value != value for value in statistics):
            raise Unsupported("SimpleImputer with a column it drops")
        return lambda matrix: np.where(_missing(matrix), statistics, matrix)
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


# Models fitted on a DataFrame: a ColumnTransformer first, fed with the rows' values column by column (what the
# service's DataFrame would hold: None is missing, as pandas' text columns make it NaN), then the array path.

Columns = list[tuple[Any, ...]]  # the values of each selected column, in row order


def _floats(columns: Columns) -> np.ndarray:
    """Columns of numbers or booleans as the float64 matrix (rows by columns) scikit-learn converts them to."""
    return np.array([[np.nan if value is None else value for value in column] for column in columns],
                    dtype=np.float64).T


def _objects(columns: Columns) -> np.ndarray:
    matrix = np.empty((len(columns[0]), len(columns)), dtype=object)
    for index, column in enumerate(columns):
        matrix[:, index] = [np.nan if value is None else value for value in column]
    return matrix


def _missing(matrix: np.ndarray) -> np.ndarray:
    return matrix != matrix  # NaN only: scikit-learn's own test for NaN in an object array


def _one_hot(encoder: Any) -> Callable[[np.ndarray], np.ndarray]:
    if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with drop or infrequent categories")
    if encoder.handle_unknown not in ("error", "ignore"):
        raise Unsupported(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r})")
    lookups = []
    for categories in encoder.categories_:
        known = {value: index for index, value in enumerate(categories) if value == value}
        nan_index = next((index for index, value in enumerate(categories) if value != value), None)
        lookups.append((known, nan_index))
    offsets = np.cumsum([0] + [len(categories) for categories in encoder.categories_])
    dtype = encoder.dtype

    def transform(matrix: np.ndarray) -> np.ndarray:
        encoded = np.zeros((matrix.shape[0], offsets[-1]), dtype=dtype)
        for column, (known, nan_index) in enumerate(lookups):
            for row, value in enumerate(matrix[:, column]):
                index = nan_index if value != value else known.get(value)
                if index is None:
                    if encoder.handle_unknown == "error":
                        raise Declined("a category the encoder has not seen")  # the model says which
                    continue
                encoded[row, offsets[column] + index] = 1
        return encoded
    return transform


def _identity(transformer: Any) -> Callable[[np.ndarray], np.ndarray]:
    if transformer.func is not None:
        raise Unsupported("FunctionTransformer with a function")
    return lambda matrix: matrix


def _column_steps(transformer: Any) -> tuple[bool, list[Callable[[np.ndarray], np.ndarray]], list[str]]:
    """Whether the block starts as text (objects), and its steps as functions of a 2-D array."""
    steps = [step for _, step in transformer.steps] if _exact_type(transformer, "Pipeline") else [transformer]
    first = steps[0]
    text = _exact_type(first, "OneHotEncoder") or (
        _exact_type(first, "SimpleImputer") and np.asarray(first.statistics_).dtype == object)
    functions, names = [], []
    for step in steps:
        name = _named(step)
        if _exact_type(step, "OneHotEncoder"):
            functions.append(_one_hot(step))
        elif _exact_type(step, "FunctionTransformer"):
            functions.append(_identity(step))
        elif _exact_type(step, *TRANSFORMS):
            functions.append(TRANSFORMS[name](step))
        else:
            raise Unsupported(f"no fast path for the step {name}")
        names.append(name)
    return text, functions, names


def _column_transformer(transformer: Any) -> tuple[Callable[[list[list[Any]]], np.ndarray], list[str]]:
    """The ColumnTransformer as a function of rows: each block's columns through its steps, side by side."""
    blocks = []
    names = []
    for name, step, _ in transformer.transformers_:
        columns = transformer._transformer_to_input_indices[name]
        if (isinstance(step, str) and step == "drop") or not columns:
            continue
        if isinstance(step, str):
            raise Unsupported(f"ColumnTransformer step {step!r}")
        text, functions, step_names = _column_steps(step)
        blocks.append((columns, text, functions))
        names.append("+".join(step_names))

    def transform(rows: list[list[Any]]) -> np.ndarray:
        values = list(zip(*rows, strict=True))
        parts = []
        for columns, text, functions in blocks:
            selected = [values[column] for column in columns]
            matrix = _objects(selected) if text else _floats(selected)
            for function in functions:
                matrix = function(matrix)
            parts.append(matrix)
        return np.ascontiguousarray(np.hstack(parts), dtype=np.float64)
    return transform, [f"ColumnTransformer({', '.join(names)})"]


def compile_frame_model(model: Any, want_proba: bool) -> FastPath:
    """The fast path for a Pipeline fitted on a DataFrame: a ColumnTransformer, then what compile_model takes.
    It takes the rows' values (in the card's feature order, None for missing); Unsupported otherwise."""
    if not _exact_type(model, "Pipeline") or not _exact_type(model.steps[0][1], "ColumnTransformer"):
        raise Unsupported("a model fitted on a DataFrame gets the fast path only as a Pipeline that starts with a "
                          "ColumnTransformer")
    first, first_names = _column_transformer(model.steps[0][1])
    rest = compile_model(model[1:], want_proba)
    return FastPath((first, *rest.steps), rest.final, (*first_names, *rest.names))


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
