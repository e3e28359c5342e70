"""`python -m derivecard MODEL --out DIR [--sample CSV] [--trust TYPE]`: a servable bundle (card.json and the
model file) from a fitted model, derived, never hand-written; or a hand-written bundle, checked.

From the model: feature names (feature_names_in_, else the sample's header, else x0..xN), task, classes, the
categories its encoders know, how training marked missing values, pandas categoricals, the scikit-learn version
and the sha256. From the sample (rows of the training data, CSV): each feature's type, whether it may be missing,
its range, and two real example rows. Then the live model is asked (derivecard/probes.py): how it takes its rows (a
2-D array, a list of texts, a DataFrame), whether it accepts each example, a value it has never seen, a missing
value where the sample had some.

Run it where the model loads with the versions it is served with: scripts/build.py runs it in the image's
builder stage. Notes (what could not be inferred) go to stdout as `card: note: ...`; an error is one line per
problem on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from modelcard.card import FORMATS, card_problems, model_files, plain, sha256_file, untrusted_problem
from modelcard.features import Feature, values_type

from service import __version__
from service.bundle import (CARD_FILE, BundleError, check_model, final_estimator, fitted_estimator, load_model,
                            read_card)
from service.frames import column_dtype
from .probes import ModelRefusal, input_kind, settled
from .introspect import Known, known_columns
from .sample import Column, SampleError, read_sample

MAX_VALUES = 200  # distinct texts of a sample column listed as the feature's values


class DeriveError(Exception):
    """The model cannot be described for serving; one line per problem."""


def find_model(folder: Path) -> Path:
    """The one model file in a folder."""
    found = model_files(folder)
    if len(found) != 1:
        raise DeriveError(f"{folder}: expected one model file ({', '.join(sorted(FORMATS))}), found "
                          f"{len(found)}{': ' + ', '.join(p.name for p in found) if found else ''}")
    return found[0]


def _trusted(artifact: Path, trust: Sequence[str]) -> list[str]:
    """skops: the types of the file that skops does not trust by default; all must be in `trust`."""
    import importlib
    skops_io = importlib.import_module("skops.io")
    untrusted = sorted(skops_io.get_untrusted_types(file=artifact))
    problem = untrusted_problem(artifact.name, untrusted, trust)
    if problem:
        raise DeriveError(problem)
    return untrusted


def _names(model: Any, columns: dict[str, Column], notes: list[str]) -> tuple[list[str], bool]:
    """The feature names, and whether the model was fitted on a DataFrame."""
    try:
        fitted = getattr(model, "feature_names_in_", None)
    except AttributeError:  # LightGBM raises it for a model fitted on an array
        fitted = None
    count = getattr(model, "n_features_in_", None)
    if fitted is not None:
        names = [str(name) for name in fitted]
        missing = [name for name in names if columns and name not in columns]
        if missing:
            raise DeriveError(f"the sample has no column {', '.join(repr(m) for m in missing)}: give rows of the "
                              f"training data with a header naming the model's features")
        extra = [name for name in columns if name not in names]
        if extra:
            notes.append(f"sample columns the model does not take, ignored: {', '.join(extra)}")
        return names, True
    if columns:
        if count is not None and len(columns) != count:
            raise DeriveError(f"the sample has {len(columns)} columns, the model takes {count} features: give "
                              f"exactly the model's columns in training order (drop the target)")
        return list(columns), False
    if count is None:
        raise DeriveError("the model does not say how many features it takes (no n_features_in_): give --sample "
                          "with rows of the training data")
    notes.append(f"feature names x0..x{count - 1}: the model was fitted on an array and no --sample gave names")
    return [f"x{i}" for i in range(count)], False


def _retyped(column: Column | None, known: Known | None) -> Column | None:
    """The sample's column, read as text when the model knows its values as text (e.g. codes like "007")."""
    if column is None or known is None or not known.values or column.type == "string":
        return column
    return column.as_type("string") if values_type(known.values) == "string" else column


def _feature(name: str, column: Column | None, known: Known | None, dataframe: bool) -> dict[str, Any]:
    """The card entry of one feature, before the live model is asked."""
    entry: dict[str, Any] = {"name": name}
    kind = column.type if column is not None else "number"  # the type of its values
    if known is not None and known.values is not None:
        kind = values_type(known.values) if known.values else kind
        entry["type"] = "string" if kind == "string" and not known.category_dtype else "category"
        entry["values"] = known.values
    else:
        entry["type"] = kind
        distinct = sorted(set(column.present)) if column is not None and kind == "string" else []
        if 0 < len(distinct) <= MAX_VALUES:
            entry["values"] = distinct
    if column is not None:
        present = column.present
        if entry["type"] in ("number", "integer") and present:
            entry["min"], entry["max"] = min(present), max(present)
        if column.nullable:
            entry["nullable"] = True
            if known is not None and known.missing and entry["type"] not in ("number", "integer"):
                entry["null_as"] = known.missing
    if dataframe:
        category = known is not None and known.category_dtype
        entry["dtype"] = "category" if category else column_dtype(Feature(name, kind, entry.get("nullable", False)))
    return entry


def _candidates(names: list[str], typed: dict[str, Column | None], known: dict[str, Known],
                fitted_on_frame: bool) -> dict[str, list[dict[str, Any]]]:
    """The kinds of input to try, in order, each with its card entries: a DataFrame alone for a model fitted on
    one; else a 2-D array, a list of texts (one text feature), then a DataFrame of the sample's columns (when the
    sample names them and pandas is installed: a user's transformer may index columns by name)."""
    def entries(dataframe: bool) -> list[dict[str, Any]]:
        return [_feature(name, typed.get(name), known.get(name), dataframe) for name in names]

    if fitted_on_frame:
        return {"dataframe": entries(True)}
    found = {"array": entries(False)}
    if [entry["type"] for entry in found["array"]] == ["string"]:
        found["texts"] = found["array"]
    if typed and importlib.util.find_spec("pandas") is not None:
        found["dataframe"] = entries(True)
    return found


def _hint(candidates: dict[str, list[dict[str, Any]]], sample: bool) -> str:
    """What to change when the model takes none of the candidates."""
    if "dataframe" in candidates:
        return ("; if it needs a DataFrame, check that the sample's columns are the ones it was fitted on, in "
                "order, or set feature_names_in_ in your transformer's fit")
    if not sample:
        return "; give --sample with a header naming the features so that a DataFrame can be tried"
    return ("; pandas is not in the image, so a DataFrame was not tried: set feature_names_in_ in your "
            "transformer's fit (or import pandas in your --code)")


def _examples(typed: dict[str, Column | None]) -> list[dict[str, Any]]:
    """Up to two real rows: the first complete one, and the first with a missing value (else the second); none
    unless the sample has every feature."""
    columns = {name: column for name, column in typed.items() if column is not None}
    if not columns or len(columns) != len(typed):
        return []
    count = len(next(iter(columns.values())).values)
    rows = [{name: column.values[i] for name, column in columns.items()} for i in range(count)]
    complete = [row for row in rows if all(value is not None for value in row.values())]
    partial = [row for row in rows if any(value is None for value in row.values())]
    chosen = (complete[:1] + partial[:1]) or rows[:1]
    return chosen + [row for row in rows if row not in chosen][:2 - len(chosen)]


TASKS = {"classifier": "classification", "regressor": "regression", "clusterer": "clustering",
         "outlier_detector": "outlier_detection"}  # scikit-learn's estimator types
OUTPUT_NAMES = {"classification": "class", "regression": "prediction", "clustering": "cluster",
                "outlier_detection": "outlier"}
MEANING = {"classification": "", "regression": "", "clustering": ": the cluster's number",
           "outlier_detection": ": -1 for an outlier, 1 for an inlier"}


def _task(model: Any, has_classes: bool) -> str:
    """The card's task from scikit-learn's estimator type (its tags from 1.6 on, `_estimator_type` before);
    a classifier must have classes_, and an estimator of no known type is a regressor."""
    try:
        import warnings

        from sklearn.utils import get_tags  # scikit-learn 1.6+
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an estimator of another library without tags: defaults, warned
            kind = get_tags(model).estimator_type
    except Exception:  # noqa: BLE001 - an older scikit-learn, or an estimator whose tags fail
        kind = None
    kind = kind or getattr(model, "_estimator_type", None)
    task = TASKS.get(str(kind), "classification" if has_classes else "regression")
    return "regression" if task == "classification" and not has_classes else task


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug[:64] or "model"


def derive_card(artifact: Path, sample: Path | None = None, trust: Sequence[str] = ()) -> dict[str, Any]:
    """The card of a fitted model file (see the module's docstring)."""
    import sklearn
    notes: list[str] = []
    file_format = FORMATS.get(artifact.suffix.lower())
    if file_format is None:
        raise DeriveError(f"{artifact.name}: unknown model file type; expected {', '.join(sorted(FORMATS))}")
    digest = sha256_file(artifact)
    described: dict[str, Any] = {"file": artifact.name, "sha256": digest, "format": file_format}
    if file_format == "skops":
        described["trusted"] = _trusted(artifact, trust)
    model = load_model(artifact, {"artifact": described})
    if not callable(getattr(model, "predict", None)):
        raise DeriveError(f"{artifact.name}: {type(model).__name__} has no predict()")
    columns, rows_read = read_sample(sample) if sample else ({}, 0)
    names, fitted_on_frame = _names(model, columns, notes)
    known = known_columns(model, names)
    typed = {name: _retyped(columns.get(name), known.get(name)) for name in names} if columns else {}
    candidates = _candidates(names, typed, known, fitted_on_frame)
    entries = next(iter(candidates.values()))
    from_sample = {e["name"] for e in entries if e.get("values") and known.get(e["name"], Known()).values is None}
    if not columns:
        notes.append("no --sample: types assumed numbers, no ranges, no feature may be null, examples made up")
    examples = _examples(typed)
    try:
        kind = input_kind(model, candidates, examples, _hint(candidates, bool(columns)))
        entries, probed = settled(model, candidates[kind], examples, kind, from_sample)
    except ModelRefusal as exc:
        raise DeriveError(str(exc)) from None
    fitted = fitted_estimator(model)
    final = final_estimator(fitted)
    classes = getattr(model, "classes_", None)
    task = _task(model, classes is not None)
    steps = " > ".join(type(step).__name__ for _, step in fitted.steps) if hasattr(fitted, "steps") else \
        type(fitted).__name__
    steps = steps if fitted is model else f"{type(model).__name__} over {steps}"
    card: dict[str, Any] = {
        "name": _slug(artifact.stem),
        "title": f"{type(final).__name__} ({artifact.name})",
        "version": digest[:12],
        "description": f"{steps}, derived from {artifact.name} by sklearn-model-service {__version__}.",
        "task": task,
        "input": kind,
        "features": entries,
        "output": {"name": OUTPUT_NAMES[task], "description": f"{type(final).__name__}.predict{MEANING[task]}"},
        "examples": examples,
        "sklearn_version": getattr(model, "_sklearn_version", None) or sklearn.__version__,
        "artifact": described,
        "notes": notes + probed,
    }
    if classes is not None:
        card["output"]["labels"] = [plain(label) for label in classes]
    if columns and sample is not None:
        card["dataset"] = {"sample": sample.name, "rows": rows_read}
    problems = card_problems(card)
    if problems:
        raise DeriveError("\n".join(f"derived card: {problem}" for problem in problems))
    return card


def _write(card: dict[str, Any], artifact: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if artifact.resolve() != (out / artifact.name).resolve():
        shutil.copyfile(artifact, out / artifact.name)
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def bundle(model: Path, out: Path, sample: Path | None = None, trust: Sequence[str] = ()) -> list[str]:
    """Write OUT (card.json and the model file) from MODEL; returns the notes."""
    if model.is_dir() and (model / CARD_FILE).is_file():
        if sample is not None:
            raise DeriveError(f"{model} has its own {CARD_FILE}, which is used as written: --sample only applies "
                              f"when the card is derived")
        card = read_card(model)
        artifact = model / card["artifact"]["file"]
        if not artifact.is_file() or sha256_file(artifact) != card["artifact"]["sha256"]:
            raise DeriveError(f"{artifact}: missing, or its sha256 is not the card's")
        check_model(load_model(artifact, card), card, artifact)
        _write(card, artifact, out)
        return [f"{model / CARD_FILE} used as written"]
    artifact = find_model(model) if model.is_dir() else model
    card = derive_card(artifact, sample, trust)
    _write(card, artifact, out)
    return card["notes"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivecard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model file (.joblib, .pkl, .pickle, .skops) or a bundle folder")
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder to write")
    parser.add_argument("--sample", type=Path, help="rows of the training data, CSV with a header")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help="skops: a type to trust beyond skops' defaults (module.Class; repeat or comma-separate)")
    args = parser.parse_args(argv)
    trust = [name for item in args.trust for name in item.split(",") if name]
    try:
        notes = bundle(args.model, args.out, args.sample, trust)
    except (BundleError, DeriveError, SampleError) as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"card: note: {note}")
    return 0

