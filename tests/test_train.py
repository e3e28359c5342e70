"""scripts/train.py is deterministic and the committed bundles are what it makes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from service.bundle import load_bundle

ROOT = Path(__file__).resolve().parent.parent


def test_training_again_gives_the_same_predictions(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    for name in ("diabetes", "iris"):
        fresh, committed = load_bundle(tmp_path / name), load_bundle(ROOT / "models" / name)
        low = np.array([[f["min"] for f in committed.card["features"]]])
        high = np.array([[f["max"] for f in committed.card["features"]]])
        grid = np.linspace(low, high, 25).reshape(25, -1)
        assert fresh.model.predict(grid).tolist() == committed.model.predict(grid).tolist()
        assert {k: v for k, v in fresh.card.items() if k not in ("artifact", "created")} == \
            {k: v for k, v in committed.card.items() if k not in ("artifact", "created")}
