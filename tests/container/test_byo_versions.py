"""The model's scikit-learn decides the image's: a model trained and saved in another environment, with another
scikit-learn, is served by an image with that scikit-learn and answers as it did there; a version with no wheel
for the image's Python is one clear line."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import joblib
import pytest

from imagebuild import cli

from ..venvs import venv
from .conftest import run_container
from .test_byo import remove_build

pytestmark = pytest.mark.container
# Its CPython 3.13 wheels are manylinux_2_17 only (issue 23: the build asked pip for manylinux_2_28 alone and said
# none existed); it has wheels for the host's Python too.
OTHER_SKLEARN = "1.6.1"
TRAIN = """
import json, sys
import joblib
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
frame = load_diabetes(as_frame=True, scaled=False).frame.drop(columns="target")
target = load_diabetes(scaled=False).target
model = make_pipeline(StandardScaler(), HistGradientBoostingRegressor(max_iter=50, random_state=7))
model.fit(frame[:400].to_numpy(), target[:400])
out = sys.argv[1]
joblib.dump(model, f"{out}/hgb.joblib")
frame[:100].to_csv(f"{out}/sample.csv", index=False)
rows = frame[400:].to_numpy()
json.dump({"rows": frame[400:].to_dict(orient="records"), "predictions": model.predict(rows).tolist()},
          open(f"{out}/expected.json", "w"))
"""


@pytest.fixture(scope="module")
def training_python() -> Path:
    """A virtual environment with the other scikit-learn."""
    return venv(f"scikit-learn-{OTHER_SKLEARN}", [f"scikit-learn=={OTHER_SKLEARN}", "pandas"])


def test_a_model_saved_with_another_scikit_learn_gets_it(training_python, tmp_path, docker_client, request):
    subprocess.run([str(training_python), "-c", TRAIN, str(tmp_path)], check=True)
    expected = json.loads((tmp_path / "expected.json").read_text())
    reference = "byo-sklearn-other:test"
    arguments = ["--model", str(tmp_path / "hgb.joblib"), "--sample", str(tmp_path / "sample.csv"),
                 "--python", str(training_python), "--tag", reference, "--size-budget", "400"]
    try:
        assert cli.main(arguments) == 0
        with run_container(docker_client, reference, request) as running:
            metadata = running.call("GET", "/metadata")[2]
            assert metadata["runtime"]["scikit_learn"] == OTHER_SKLEARN == metadata["card"]["sklearn_version"]
            status, _, answer = running.call("POST", "/predict", expected["rows"])
            assert status == 200 and answer["predictions"] == expected["predictions"]
    finally:
        remove_build(docker_client, reference)


def test_a_scikit_learn_without_a_wheel_for_the_image_is_one_line(tmp_path, capsys, monkeypatch):
    """A pickle that says it was saved by scikit-learn 1.3.2, which publishes no CPython 3.13 wheel."""
    import sklearn.base
    from sklearn.linear_model import LinearRegression
    monkeypatch.setattr(sklearn.base, "__version__", "1.3.2")
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), tmp_path / "old.joblib")
    monkeypatch.undo()
    assert cli.main(["--model", str(tmp_path / "old.joblib"), "--tag", "byo-old:test"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: scikit-learn 1.3.2 (the version the model was saved with) publishes no wheel for "
                      "CPython 3.13 on glibc 2.41 x86_64 (manylinux 2.17 to 2.41), the image's runtime on linux/amd64: "
                      "save the model with a release that has one (scikit-learn 1.5.2 is the oldest later release "
                      "with one)"]
