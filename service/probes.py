"""Asking a live model what it accepts: a typical record and the sample's rows, a value it has never seen (if
refused, the feature's values are closed), a missing value (refused: the feature may not be null; for text,
whether it takes None or NaN). service/derive.py settles the card's features with the answers.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelcard.features import Feature, values_type

from .frames import input_builder

UNSEEN = "__a value never seen in training__"


class ModelRefusal(Exception):
    """The model refuses a record it should take: one line."""


class Probe:
    """Asks the live model whether it accepts a record."""

    def __init__(self, model: Any, dataframe: bool):
        self.model, self.dataframe = model, dataframe

    def error(self, entries: list[dict[str, Any]], record: dict[str, Any]) -> str | None:
        features = [Feature.from_card({**entry, "closed": False}) for entry in entries]
        try:
            row = [feature.parse(record[feature.name], "probe") for feature in features]
            answer = self.model.predict(input_builder(features, self.dataframe)([row]))
        except Exception as exc:  # noqa: BLE001 - any refusal counts
            return f"{type(exc).__name__}: {' '.join(str(getattr(exc, 'message', exc)).split())}"
        if np.ndim(answer) != 1:
            return f"it answers {np.shape(answer)[1:]} values per row, and only one output per row is served"
        return None


def settled(model: Any, entries: list[dict[str, Any]], examples: list[dict[str, Any]], dataframe: bool,
             from_sample: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries with closed, nullable and null_as settled by asking the live model, and notes; the examples
    (and a typical record) must be accepted."""
    probe = Probe(model, dataframe)
    shapes = {entry["name"]: Feature.from_card(entry) for entry in entries}
    first = examples[0] if examples else {}
    base = {name: first[name] if first.get(name) is not None else shape.typical(0.5, 0)
            for name, shape in shapes.items()}
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
            entry["closed"] = probe.error(settled, {**base, entry["name"]: unseen}) is not None
            if entry["closed"] and entry["name"] in from_sample:
                notes.append(f"feature '{entry['name']}': the model refuses values it has not seen; the allowed "
                             f"ones ({len(values)}) come from the sample: add any it lacks to 'values'")
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
