"""The book's serving pattern (Practical MLOps, chapter 3) rebuilt on current libraries, as a baseline:
Flask's development server, and the model loaded from disk on every request.

    python benchmark/book_app.py MODEL_DIR PORT

Left out on purpose: the book fits a StandardScaler on each request's own rows, so every one-row request gets
the same answer; here the answers are the model's, so they can be checked against the other servers.
The book also runs with debug=True, whose reloader polls files; that would only slow it down further.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import numpy as np
from flask import Flask, jsonify, request

model_dir = Path(sys.argv[1])
features = [feature["name"] for feature in json.loads((model_dir / "card.json").read_text())["features"]]
app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    clf = joblib.load(model_dir / "model.joblib")  # as in the book: on every request
    payload = request.json
    records = payload if isinstance(payload, list) else [payload]
    rows = np.array([[record[name] for name in features] for record in records], dtype=float)
    return jsonify({"prediction": clf.predict(rows).tolist()})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]))
