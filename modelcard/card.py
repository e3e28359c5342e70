"""The model card: checked against modelcard/card.schema.json, then for what a schema cannot say (unique names,
values that fit their feature, a classifier's labels). Every problem is reported at once, one line each.

The schema uses a small subset of JSON Schema (type, enum, required, properties, additionalProperties,
patternProperties, items, minItems, minLength, pattern, local $ref), interpreted here so the image needs no
validator package; tests/test_card.py checks that the jsonschema package gives the same verdicts.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any
from collections.abc import Sequence

SCHEMA_FILE = Path(__file__).with_name("card.schema.json")
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
KEYWORDS = {"type", "enum", "required", "properties", "additionalProperties", "patternProperties", "items",
            "minItems", "minLength", "pattern", "$ref"}
ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default"}
TEXT_TYPES = ("string", "category")
DTYPES_WITHOUT_NULL = ("int64", "int32", "bool")
FORMATS = {".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle", ".skops": "skops"}  # by file suffix


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (the card's artifact.sha256; the build's downloads and records)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def model_files(folder: Path) -> list[Path]:
    """The model files (FORMATS) in a folder, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)


def plain(value: Any) -> Any:
    """numpy scalars as the Python values JSON encodes exactly (float64 round-trips through repr); the rest as
    it is. Duck-typed (`.item()`), so that this module needs only the standard library."""
    return value.item() if hasattr(value, "item") else value


def _is(kind: str, value: Any) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind == "number" or float(value).is_integer()


def _resolve(reference: str) -> dict[str, Any]:
    node: Any = SCHEMA
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


def schema_problems(value: Any, schema: dict[str, Any] = SCHEMA, where: str = "card") -> list[str]:
    """Where `value` breaks `schema`, one line per problem (nothing below a part that has the wrong type)."""
    if "$ref" in schema:
        return schema_problems(value, _resolve(schema["$ref"]), where)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(kind, value) for kind in kinds):
            return [f"{where}: must be {' or '.join(kinds)}, not {_describe(value)}"]
    if "enum" in schema and not any(value == option and type(value) is type(option) for option in schema["enum"]):
        return [f"{where}: must be one of {', '.join(json.dumps(o) for o in schema['enum'])}, not {json.dumps(value)}"]
    problems: list[str] = []
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{where}: must not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: {json.dumps(value)} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for index, item in enumerate(value):
                problems += schema_problems(item, schema["items"], f"{where}[{index}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where}: missing key '{key}'")
        properties, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        for key, item in value.items():
            if key in properties:
                problems += schema_problems(item, properties[key], f"{where}.{key}")
                continue
            matched = [pattern for pattern in patterns if re.search(pattern, key)]
            for pattern in matched:
                problems += schema_problems(item, patterns[pattern], f"{where}.{key}")
            extra = schema.get("additionalProperties", True)
            if not matched and extra is False:
                known = ", ".join(properties)
                problems.append(f"{where}: unknown key '{key}' (known: {known})")
            elif not matched and isinstance(extra, dict):
                problems += schema_problems(item, extra, f"{where}.{key}")
    return problems


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _feature_problems(feature: dict[str, Any], where: str, dataframe: bool) -> list[str]:
    problems = []
    kind, values = feature["type"], feature.get("values")
    if kind == "category" and values is None:
        problems.append(f"{where}: a category needs its 'values'")
    if values is not None and kind not in TEXT_TYPES:
        problems.append(f"{where}: 'values' only applies to string and category features")
    if values is not None and kind == "string" and not all(isinstance(v, str) for v in values):
        problems.append(f"{where}: a string feature's 'values' must all be strings")
    if values is not None and len({json.dumps(v) for v in values}) != len(values):
        problems.append(f"{where}: 'values' has duplicates")
    if feature.get("closed") and values is None:
        problems.append(f"{where}: 'closed' needs 'values' (the allowed ones)")
    if ("min" in feature or "max" in feature) and kind not in ("number", "integer"):
        problems.append(f"{where}: 'min' and 'max' only apply to number and integer features")
    if isinstance(feature.get("min"), (int, float)) and isinstance(feature.get("max"), (int, float)) \
            and feature["min"] > feature["max"]:
        problems.append(f"{where}: 'min' is greater than 'max'")
    if "null_as" in feature and kind not in (*TEXT_TYPES, "boolean"):
        problems.append(f"{where}: 'null_as' only applies to string, category and boolean features")
    if "dtype" in feature and not dataframe:
        problems.append(f"{where}: 'dtype' only applies with \"input\": \"dataframe\"")
    if feature.get("nullable") and feature.get("dtype") in DTYPES_WITHOUT_NULL:
        problems.append(f"{where}: dtype {feature['dtype']} cannot hold a missing value; use a nullable dtype "
                        f"(float64, object, boolean, Int64) or set nullable to false")
    return problems


def card_problems(card: Any) -> list[str]:
    """Every problem of the card, one line each; empty when it is valid."""
    problems = schema_problems(card)
    if problems:
        return problems
    dataframe = card.get("input") == "dataframe"
    names = [feature["name"] for feature in card["features"]]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"card.features: the name '{name}' is used {names.count(name)} times")
    for index, feature in enumerate(card["features"]):
        problems += _feature_problems(feature, f"card.features[{index}] '{feature['name']}'", dataframe)
    if card.get("input") == "texts" and [f["type"] for f in card["features"]] != ["string"]:
        problems.append("card.input: \"texts\" takes exactly one feature, of type string")
    labels = card["output"].get("labels")
    if card["task"] == "classification" and labels is None:
        problems.append("card.output: a classifier needs its class 'labels'")
    if card["task"] != "classification" and labels is not None:
        problems.append("card.output: 'labels' only applies to a classifier")
    artifact = card["artifact"]
    if "trusted" in artifact and artifact_format(card) != "skops":
        problems.append("card.artifact: 'trusted' only applies to a skops file")
    if not problems:
        problems += _example_problems(card)
    return problems


def _example_problems(card: dict[str, Any]) -> list[str]:
    """Each example must be a record the service accepts."""
    from .features import Feature, ValueProblem
    features = [Feature.from_card(entry) for entry in card["features"]]
    problems = []
    for index, example in enumerate(card.get("examples", [])):
        where = f"card.examples[{index}]"
        missing = [f.name for f in features if f.name not in example]
        unknown = [key for key in example if key not in {f.name for f in features}]
        if missing:
            problems.append(f"{where}: missing feature(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"{where}: unknown feature(s) {', '.join(unknown)}")
        for feature in features:
            if feature.name in example:
                try:
                    feature.parse(example[feature.name], where)
                except ValueProblem as exc:
                    problems.append(exc.message)
    return problems


CARD_FILE = "card.json"


class CardError(Exception):
    """The card cannot be used: each line of the message is one problem."""


def read_card(folder: Path) -> dict[str, Any]:
    """The card.json of a bundle folder, checked; CardError lists every problem, one line each."""
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise CardError(f"model card not found: {card_path} (a bundle is a folder holding {CARD_FILE} and the "
                        f"model file it names; `python scripts/build.py --model MODEL_FILE` derives one)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"model card {card_path} is not readable JSON: {exc}") from None
    problems = card_problems(card)
    if problems:
        raise CardError("\n".join(f"{card_path}: {problem}" for problem in problems))
    return card


def artifact_format(card: dict[str, Any]) -> str:
    """joblib, pickle or skops: the card's `artifact.format`, else the file's suffix (joblib by default)."""
    return card["artifact"].get("format") or FORMATS.get(Path(card["artifact"]["file"]).suffix.lower(), "joblib")


def untrusted_problem(file_name: str, untrusted: list[str], trust: Sequence[str]) -> str | None:
    """The one line refusing a skops file whose types skops does not trust by default and `trust` leaves out;
    None when every such type is trusted."""
    refused = sorted(name for name in untrusted if name not in trust)
    if not refused:
        return None
    return (f"{file_name} holds types skops does not trust by default: {', '.join(refused)}; check them, then pass "
            f"--trust {','.join(refused)}")
