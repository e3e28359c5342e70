"""Asking a live model what it accepts: how it takes its rows (a 2-D array, a DataFrame, or a list of texts), a
typical record and the sample's rows, a value it has never seen (refused where the model itself knows the
feature's values, e.g. an encoder with handle_unknown="error": the feature's values are closed; values read from
the sample never close a feature), a missing value (refused: the feature may not be null; for text, whether it
takes None or NaN). derivecard/derive.py settles the card's features with the answers.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelcard.features import Feature, values_type

from service.frames import input_builder

UNSEEN = "__a value never seen in training__"
GIVEN = {"array": "a 2-D array", "dataframe": "a DataFrame", "texts": "a list of texts"}


class ModelRefusal(Exception):
    """The model refuses a record it should take: one line."""


class Probe:
    """Asks the live model whether it accepts a record."""

    def __init__(self, model: Any, kind: str):
        self.model, self.kind = model, kind

    def error(self, entries: list[dict[str, Any]], record: dict[str, Any]) -> str | None:
        features = [Feature.from_card({**entry, "closed": False}) for entry in entries]
        try:
            row = [feature.parse(record[feature.name], "probe") for feature in features]
            answer = self.model.predict(input_builder(features, self.kind)([row]))
        except Exception as exc:  # noqa: BLE001 - any refusal counts
            return f"{type(exc).__name__}: {' '.join(str(getattr(exc, 'message', exc)).split())}"
        if np.ndim(answer) != 1:
            return f"it answers {np.shape(answer)[1:]} values per row, and only one output per row is served"
        return None


def typical_record(entries: list[dict[str, Any]], examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The first example, its missing values filled with each feature's typical value."""
    first = examples[0] if examples else {}
    return {entry["name"]: first[entry["name"]] if first.get(entry["name"]) is not None
            else Feature.from_card(entry).typical(0.5, 0) for entry in entries}


def input_kind(model: Any, candidates: dict[str, list[dict[str, Any]]], examples: list[dict[str, Any]],
               hint: str) -> str:
    """The first kind of input (the card's entries for it) on which the model answers a typical record; else
    ModelRefusal saying what it was given, what failed, and `hint`."""
    failures = []
    for kind, entries in candidates.items():
        failure = Probe(model, kind).error(entries, typical_record(entries, examples))
        if failure is None:
            return kind
        failures.append((kind, failure))
    if len(failures) == 1:
        raise ModelRefusal(f"the model fails on a typical record: {failures[0][1]}")
    tried = "; ".join(f"given {GIVEN[kind]}: {failure}" for kind, failure in failures)
    raise ModelRefusal(f"the model fails on a typical record {tried}{hint}")


def settled(model: Any, entries: list[dict[str, Any]], examples: list[dict[str, Any]], kind: str,
            from_sample: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries with closed, nullable and null_as settled by asking the live model, and notes; the examples
    (and a typical record) must be accepted."""
    probe = Probe(model, kind)
    base = typical_record(entries, examples)
    for index, record in enumerate([base, *examples]):
        failure = probe.error(entries, record)
        if failure:
            what = "a typical record" if index == 0 else f"sample row {json.dumps(record)}"
            raise ModelRefusal(f"the model fails on {what}: {failure}")
    settled, notes = [dict(entry) for entry in entries], []
    for entry in settled:
        values = entry.get("values")
        if values and values_type(values) != "boolean":
            unseen = UNSEEN if isinstance(values[0], str) else max(values) + 1
            refused = probe.error(settled, {**base, entry["name"]: unseen}) is not None
            entry["closed"] = refused and entry["name"] not in from_sample  # the sample's values never close it
            if refused and not entry["closed"]:
                notes.append(f"feature '{entry['name']}': the model refused a value not in the sample; it stays "
                             f"open (the sample's values are not all there are): a value the model refuses is "
                             f"answered 422 rejected_by_model")
        if entry.get("nullable"):
            markers = [None] if entry["type"] in ("number", "integer") else \
                [entry["null_as"]] if "null_as" in entry else ["None", "NaN"]
            accepted = next((marker for marker in markers if probe.error(
                [{**entry, "null_as": marker} if marker and e is entry else e for e in settled],
                {**base, entry["name"]: None}) is None), False)
            if accepted is False:
                entry.pop("nullable")
                entry.pop("null_as", None)
                notes.append(f"feature '{entry['name']}': the sample has missing values but the model refuses "
                             f"them: null gets 422")
            elif accepted:
                entry["null_as"] = accepted
    return settled, notes
