"""Model bundles: a model file beside its card.json, verified before anything is loaded.

Order: the card (every problem at once), the file's sha256, the scikit-learn version, then the load (joblib or
pickle; a skops file through skops' trusted-types check), then the estimator against the card.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Collection

from modelcard.card import CARD_FILE, CardError, artifact_format, sha256_file
from modelcard.card import read_card as read_checked_card
from modelcard.features import Feature

from .frames import input_builder

BUILD_HINT = "build an image for this model with `python scripts/build.py --model MODEL_FILE`"


class BundleError(Exception):
    """The bundle cannot be served. Each line of the message is one problem: what, where, and what to do."""


@dataclass(frozen=True)
class ModelBundle:
    """A verified model card and the estimator it describes."""

    path: Path
    card: dict[str, Any]
    model: Any
    sha256: str
    features: list[Feature] = field(init=False)
    to_input: Callable[[Collection[Any]], Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        features = [Feature.from_card(entry) for entry in self.card["features"]]
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "to_input", input_builder(features, self.input))

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def input(self) -> str:
        """What predict() receives: "array", "dataframe" or "texts" (service/frames.py)."""
        return str(self.card.get("input", "array"))

    @property
    def takes_array(self) -> bool:
        """predict() takes an array: rows of plain numbers may be read into it at once (service/inputs.py)."""
        return self.input == "array"

    @property
    def dataframe(self) -> bool:
        return self.input == "dataframe"

    @property
    def is_classifier(self) -> bool:
        return self.card["task"] == "classification"

    @property
    def classes(self) -> list[Any] | None:
        classes = getattr(self.model, "classes_", None)
        return None if classes is None else [value.item() if hasattr(value, "item") else value
                                             for value in classes]


def fitted_estimator(model: Any) -> Any:
    """The estimator a search (GridSearchCV, ...) refitted, or the model itself."""
    return getattr(model, "best_estimator_", model)


def final_estimator(model: Any) -> Any:
    """The last step of a Pipeline, or the estimator itself."""
    return model.steps[-1][1] if hasattr(model, "steps") else model


def read_card(directory: Path) -> dict[str, Any]:
    """The bundle's card, checked against the schema; BundleError lists every problem."""
    try:
        return read_checked_card(directory)
    except CardError as exc:
        raise BundleError(str(exc)) from None


def load_model(path: Path, card: dict[str, Any]) -> Any:
    """Load the model file: joblib/pickle, or skops with only skops' default types and the card's `trusted`."""
    try:
        if artifact_format(card) == "skops":
            skops_io = importlib.import_module("skops.io")  # only bundles in skops format need the package
            return skops_io.load(path, trusted=card["artifact"].get("trusted", []))
        import joblib
        return joblib.load(path)
    except ModuleNotFoundError as exc:
        raise BundleError(f"cannot load {path}: it needs the module '{exc.name}', which is not installed "
                          f"({BUILD_HINT} [--code DIR for your own modules])") from None
    except Exception as exc:  # noqa: BLE001 - a load failure can be any exception the file raises
        message = " ".join(str(exc).split())
        raise BundleError(f"cannot load {path}: {type(exc).__name__}: {message}") from None


def check_model(model: Any, card: dict[str, Any], where: Path) -> None:
    """The estimator must be able to serve what the card promises; every mismatch is one line."""
    problems = []
    if not callable(getattr(model, "predict", None)):
        raise BundleError(f"{where}: {type(model).__name__} has no predict()")
    expected = len(card["features"])
    found = getattr(model, "n_features_in_", None)
    if found is not None and found != expected:
        problems.append(f"{where}: the estimator expects {found} features but the card lists {expected}")
    names_in = getattr(model, "feature_names_in_", None)
    card_names = [feature["name"] for feature in card["features"]]
    if names_in is not None and list(names_in) != card_names:
        problems.append(f"{where}: the estimator was fitted on features {list(names_in)}, "
                        f"the card lists {card_names} (same names, same order)")
    if names_in is not None and card.get("input") != "dataframe":
        problems.append(f"{where}: the estimator was fitted on a DataFrame: the card needs \"input\": \"dataframe\"")
    if card["task"] == "classification":
        classes = [str(value) for value in getattr(model, "classes_", [])]
        if classes != [str(label) for label in card["output"]["labels"]]:
            problems.append(f"{where}: the estimator's classes {classes} differ from the card's "
                            f"labels {card['output']['labels']}")
    if problems:
        raise BundleError("\n".join(problems))


def load_bundle(directory: str | Path) -> ModelBundle:
    """Read and verify the card, check the artifact's sha256 and scikit-learn version, load, check the model."""
    directory = Path(directory)
    card = read_card(directory)
    card_path = directory / CARD_FILE
    artifact = directory / card["artifact"]["file"]
    if not artifact.is_file():
        raise BundleError(f"artifact not found: {artifact} (named by {card_path})")
    digest = sha256_file(artifact)
    if digest != card["artifact"]["sha256"]:
        raise BundleError(f"artifact {artifact} has sha256 {digest}, the card expects "
                          f"{card['artifact']['sha256']}: refusing to load it "
                          f"(restore the file, or put the new model's sha256 in the card)")

    import sklearn  # imported here: verifying the card must not wait for scikit-learn
    if card["sklearn_version"] != sklearn.__version__:
        raise BundleError(f"{card_path}: the model was saved with scikit-learn {card['sklearn_version']} "
                          f"but {sklearn.__version__} is installed; pickles do not cross versions "
                          f"({BUILD_HINT}: the image gets scikit-learn {card['sklearn_version']})")
    model = load_model(artifact, card)
    check_model(model, card, artifact)
    return ModelBundle(path=directory, card=card, model=model, sha256=digest)
