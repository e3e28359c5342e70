"""Model bundles: a joblib artifact beside a JSON model card, verified before anything is unpickled."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"
TASKS = ("regression", "classification")
CARD_KEYS = (
    "name", "title", "version", "description", "task", "dataset", "features", "output",
    "metrics", "sklearn_version", "artifact", "created",
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BundleError(Exception):
    """The bundle cannot be served. The message is one line: what is wrong, where, and what to do."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    """A verified model card and the estimator it describes."""

    path: Path
    card: dict[str, Any]
    model: Any
    sha256: str

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.card["features"]]

    @property
    def is_classifier(self) -> bool:
        return self.card["task"] == "classification"

    @property
    def classes(self) -> list[Any] | None:
        classes = getattr(self.model, "classes_", None)
        return None if classes is None else [value.item() if hasattr(value, "item") else value
                                             for value in classes]


def validate_card(card: Any, where: Path) -> None:
    """Raise BundleError naming the first key of the card that is missing or malformed."""
    if not isinstance(card, dict):
        raise BundleError(f"model card {where}: expected a JSON object")
    for key in CARD_KEYS:
        if key not in card:
            raise BundleError(f"model card {where}: missing key '{key}'")
    if card["task"] not in TASKS:
        raise BundleError(f"model card {where}: 'task' must be one of {', '.join(TASKS)}, not {card['task']!r}")
    features = card["features"]
    if not isinstance(features, list) or not features:
        raise BundleError(f"model card {where}: 'features' must be a non-empty list")
    names = [feature.get("name") if isinstance(feature, dict) else None for feature in features]
    if not all(isinstance(name, str) and name for name in names):
        raise BundleError(f"model card {where}: every feature needs a 'name'")
    if len(set(names)) != len(names):
        raise BundleError(f"model card {where}: feature names must be unique")
    artifact = card["artifact"]
    if not isinstance(artifact, dict) or not isinstance(artifact.get("file"), str) \
            or not SHA256.match(str(artifact.get("sha256", ""))):
        raise BundleError(f"model card {where}: 'artifact' needs 'file' and a 64-hex-digit 'sha256'")
    if card["task"] == "classification" and not isinstance(card["output"].get("labels"), list):
        raise BundleError(f"model card {where}: a classifier's 'output' needs its class 'labels'")


def _check_model(model: Any, card: dict[str, Any], where: Path) -> None:
    """The estimator must be able to serve what the card promises."""
    if not callable(getattr(model, "predict", None)):
        raise BundleError(f"{where}: {type(model).__name__} has no predict()")
    expected = len(card["features"])
    found = getattr(model, "n_features_in_", None)
    if found != expected:
        raise BundleError(f"{where}: the estimator expects {found} features but the card lists {expected}")
    names_in = getattr(model, "feature_names_in_", None)
    card_names = [feature["name"] for feature in card["features"]]
    if names_in is not None and list(names_in) != card_names:
        raise BundleError(f"{where}: the estimator was fitted on features {list(names_in)}, "
                          f"the card lists {card_names} (same names, same order)")
    if card["task"] == "classification":
        classes = [str(value) for value in getattr(model, "classes_", [])]
        if classes != [str(label) for label in card["output"]["labels"]]:
            raise BundleError(f"{where}: the estimator's classes {classes} differ from the card's "
                              f"labels {card['output']['labels']}")


def load_bundle(directory: str | Path) -> ModelBundle:
    """Read and verify the card, check the artifact's sha256, then unpickle and check the estimator."""
    directory = Path(directory)
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise BundleError(f"model card not found: {card_path} (a bundle is a folder holding "
                          f"{CARD_FILE} and the artifact it names; make one with scripts/train.py)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"model card {card_path} is not readable JSON: {exc}") from None
    validate_card(card, card_path)

    artifact = directory / card["artifact"]["file"]
    if not artifact.is_file():
        raise BundleError(f"artifact not found: {artifact} (named by {card_path})")
    digest = sha256_file(artifact)
    if digest != card["artifact"]["sha256"]:
        raise BundleError(f"artifact {artifact} has sha256 {digest}, the card expects "
                          f"{card['artifact']['sha256']}: refusing to unpickle it "
                          f"(restore the artifact or retrain with scripts/train.py)")

    import sklearn  # imported here: verifying the card must not wait for scikit-learn
    if card["sklearn_version"] != sklearn.__version__:
        raise BundleError(f"{card_path}: the model was saved with scikit-learn {card['sklearn_version']} "
                          f"but {sklearn.__version__} is installed; pickles do not cross versions "
                          f"(retrain with scripts/train.py, or pin scikit-learn=={card['sklearn_version']})")
    import joblib
    try:
        model = joblib.load(artifact)
    except Exception as exc:  # an unpickling failure can be any exception the pickle raises
        raise BundleError(f"cannot load {artifact}: {type(exc).__name__}: {exc}") from None
    _check_model(model, card, artifact)
    return ModelBundle(path=directory, card=card, model=model, sha256=digest)
