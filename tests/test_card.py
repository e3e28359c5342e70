"""The card format: modelcard/card.schema.json is real JSON Schema (the jsonschema package agrees with the built-in
validator on every card here), and a card's problems are all reported at once, one line each."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from imagebuild.http_calls import free_port

from modelcard.card import ANNOTATIONS, KEYWORDS, SCHEMA, card_problems, schema_problems

from .conftest import BUNDLES, ROOT


def load(name: str) -> dict:
    return json.loads((BUNDLES[name] / "card.json").read_text())


def keywords(node) -> set[str]:
    """Every keyword the schema uses (property names under `properties` are data, not keywords)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "patternProperties", "$defs"):
                for child in value.values():
                    found |= keywords(child)
            elif key not in ("enum", "required", "default"):
                found |= keywords(value)
    elif isinstance(node, list):
        for item in node:
            found |= keywords(item)
    return found


def test_the_schema_uses_only_keywords_the_validator_knows():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert keywords(SCHEMA) <= KEYWORDS | ANNOTATIONS


MUTATIONS = [
    ("valid", lambda c: None),
    ("no name", lambda c: c.pop("name")),
    ("name with a space", lambda c: c.update(name="my model")),
    ("task", lambda c: c.update(task="ranking")),
    ("features empty", lambda c: c.update(features=[])),
    ("feature without type", lambda c: c["features"][0].pop("type")),
    ("min is text", lambda c: c["features"][0].update(min="low")),
    ("typo key", lambda c: c["features"][0].update(nulable=True)),
    ("values empty", lambda c: c["features"][0].update(values=[])),
    ("nullable text", lambda c: c["features"][1].update(nullable="yes")),
    ("unknown top key", lambda c: c.update(sklearn_verison="1.9.1")),
    ("own x- key", lambda c: c.update({"x-team": "pricing"})),
    ("sha256 short", lambda c: c["artifact"].update(sha256="abc")),
    ("artifact path", lambda c: c["artifact"].update(file="../model.joblib")),
    ("format", lambda c: c["artifact"].update(format="onnx")),
    ("labels of objects", lambda c: c["output"].update(labels=[{}])),
    ("input", lambda c: c.update(input="table")),
    ("examples not objects", lambda c: c.update(examples=[1])),
    ("null_as", lambda c: c["features"][0].update(null_as="null")),
]


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
@pytest.mark.parametrize("name,mutate", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_built_in_validator_agrees_with_jsonschema(bundle, name, mutate):
    card = load(bundle)
    mutate(card)
    reference = not any(True for _ in jsonschema.Draft202012Validator(SCHEMA).iter_errors(card))
    assert (schema_problems(card) == []) == reference, schema_problems(card)


def broken_card() -> dict:
    """Four problems, in four places."""
    card = load("diabetes")
    card["features"][0]["min"] = "low"  # once a KeyError: 'min' at start-up
    card["features"][1].pop("type")
    card["features"][2]["nulable"] = True
    card.pop("sklearn_version")
    return card


def test_every_problem_is_reported_at_once_one_line_each():
    problems = card_problems(broken_card())
    assert len(problems) == 4
    assert any(p.startswith("card.features[0].min: must be number") for p in problems)
    assert "card.features[1]: missing key 'type'" in problems
    assert any(p.startswith("card.features[2]: unknown key 'nulable'") for p in problems)
    assert "card: missing key 'sklearn_version'" in problems
    assert all("\n" not in p for p in problems)


def test_semantic_problems_too():
    card = load("diabetes")
    card["features"].append(copy.deepcopy(card["features"][0]))
    card["features"][1].update(type="category")  # a category needs values
    card["features"][2].update(min=5, max=1)
    card["output"]["labels"] = ["a"]  # a regressor has no labels
    problems = card_problems(card)
    assert "card.features: the name 'age' is used 2 times" in problems
    assert "card.features[1] 'sex': a category needs its 'values'" in problems
    assert "card.features[2] 'bmi': 'min' is greater than 'max'" in problems
    assert "card.output: 'labels' only applies to a classifier" in problems


def test_examples_must_be_records_the_service_accepts():
    card = load("diabetes")
    card["examples"][0]["bmi"] = "fat"
    card["examples"][1]["zz"] = 1
    problems = card_problems(card)
    assert problems == ["card.examples[0]: feature 'bmi' must be a finite number, got a string",
                        "card.examples[1]: unknown feature(s) zz"]


def test_a_broken_card_stops_the_server_with_one_line_per_problem(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.joblib").write_bytes((BUNDLES["diabetes"] / "model.joblib").read_bytes())
    (bundle / "card.json").write_text(json.dumps(broken_card()))
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True,
                            env={"MODEL_DIR": str(bundle), "PATH": "/usr/bin:/bin", "SERVICE_PORT": str(free_port()), "SERVICE_WORKERS": "1"},
                            timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 4 and all(line.startswith(f"error: {bundle / 'card.json'}: card") for line in lines)
    assert "Traceback" not in result.stderr


def test_the_schema_documents_every_field():
    """Each property of the card and of a feature has a description or is self-evident (names, free text)."""
    undocumented = [key for key, value in SCHEMA["$defs"]["feature"]["properties"].items()
                    if "description" not in value and key not in ("name", "description", "unit")]
    assert undocumented == []
    assert Path(ROOT / "modelcard" / "card.schema.json").is_file()
