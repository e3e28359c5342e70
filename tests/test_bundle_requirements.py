"""Requirements from the model: its classes' modules mapped to distributions by the training environment (else
pipreqs' mapping), the user's code imports, pandas for DataFrame models, and scikit-learn at the model's version."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from imagebuild import BuildError, bundle_requirements, requirements
from imagebuild.bundle_requirements import Needs, model_needs, requirements_file
from imagebuild.environment import Environment, environment
from imagebuild.model_input import ModelSource, model_source
from imagebuild.scan import Scan, scan_model

from .conftest import ROOT

TRAINING = Environment(
    python="/home/me/venvs/train/bin/python", python_version="3.12.3",
    modules={"sklearn": ["scikit-learn"], "numpy": ["numpy"], "imblearn": ["imbalanced-learn"], "joblib": ["joblib"],
             "yaml": ["PyYAML"], "pandas": ["pandas"]},
    versions={"scikit-learn": "1.9.1", "numpy": "2.4.6", "imbalanced-learn": "0.14.2", "joblib": "1.6.0",
              "pyyaml": "6.0.4", "pandas": "3.1.1"})


def scan(*classes: str, version: str | None = "1.9.1", dataframe: bool = False, kind: str = "joblib") -> Scan:
    # a set of pairs, read as Scan's set of (module, name)
    return Scan(kind, {tuple(c.rsplit(".", 1)) for c in classes}, version, dataframe)  # type: ignore[misc]


def source(tmp_path: Path, code: dict[str, str] | None = None) -> ModelSource:
    artifact = tmp_path / "model.joblib"
    artifact.write_bytes(b"")
    folders = []
    if code:
        folder = tmp_path / "src"
        for name, text in code.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        folders.append(folder)
    return model_source(artifact, code=folders)


def test_imports_are_mapped_by_the_training_environment(tmp_path):
    needs = model_needs(scan("imblearn.pipeline.Pipeline", "sklearn.linear_model._logistic.LogisticRegression",
                             "numpy._core.multiarray._reconstruct", "builtins.set"), source(tmp_path), TRAINING)
    assert needs.pins == {"imbalanced-learn": "0.14.2", "scikit-learn": "1.9.1", "numpy": "2.4.6"}


def test_the_models_scikit_learn_version_decides(tmp_path):
    needs = model_needs(scan("sklearn.linear_model._base.LinearRegression", version="1.8.0"), source(tmp_path),
                        TRAINING)
    assert needs.pins["scikit-learn"] == "1.8.0"
    assert any("the model was saved with 1.8.0: the image gets 1.8.0" in note for note in needs.notes)


def test_pandas_only_for_a_model_fitted_on_a_dataframe(tmp_path):
    assert "pandas" not in model_needs(scan("sklearn.svm._classes.SVC"), source(tmp_path), TRAINING).pins
    assert model_needs(scan("sklearn.svm._classes.SVC", dataframe=True), source(tmp_path),
                       TRAINING).pins["pandas"] == "3.1.1"


def test_skops_files_need_skops_and_unknown_versions_are_noted(tmp_path):
    needs = model_needs(scan("sklearn.svm._classes.SVC", kind="skops"), source(tmp_path), TRAINING)
    assert needs.pins["skops"] is None
    assert any(note.startswith("skops is not installed in /home/me/venvs/train/bin/python") for note in needs.notes)


def test_a_module_nobody_provides_is_one_line_naming_it(tmp_path):
    with pytest.raises(BuildError) as raised:
        model_needs(scan("acme_models.magic.Magic"), source(tmp_path), TRAINING)
    message = str(raised.value)
    assert message.startswith("module 'acme_models' (the model references acme_models.magic.Magic) is provided "
                              "by no distribution installed in /home/me/venvs/train/bin/python")
    assert "--python" in message and "--code" in message and "\n" not in message


def test_a_short_named_compiled_module_belongs_to_the_package_it_sits_in(tmp_path):
    """scikit-learn 1.5-1.7 pickle HistGradientBoosting's Cython losses as `_loss.CyHalfSquaredError`; no
    distribution has a top-level `_loss` (1.9's is sklearn._loss._loss), the pickle's other classes say whose it is."""
    needs = model_needs(scan("_loss.CyHalfSquaredError", "sklearn._loss.loss.HalfSquaredError",
                             "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
                             version="1.6.1"), source(tmp_path), TRAINING)
    assert needs.pins == {"scikit-learn": "1.6.1"}


def test_pipreqs_mapping_is_the_fallback(tmp_path):
    bare = Environment("python", "3.11", {}, {})
    assert model_needs(scan("sklearn.svm._classes.SVC"), source(tmp_path), bare).pins == {"scikit-learn": "1.9.1"}


def test_a_class_from_the_training_script_is_refused(tmp_path):
    with pytest.raises(BuildError, match=r"references Ratio, defined in the training script \(__main__\)"):
        model_needs(scan("__main__.Ratio"), source(tmp_path), TRAINING)


def test_the_users_code_is_not_a_requirement_but_its_imports_are(tmp_path):
    code = {"features/__init__.py": "import yaml\nimport numpy as np\nfrom . import scaling\n",
            "features/scaling.py": "import json\n"}
    needs = model_needs(scan("features.scaling.Log", "sklearn.pipeline.Pipeline"), source(tmp_path, code), TRAINING)
    assert needs.pins == {"pyyaml": "6.0.4", "numpy": "2.4.6", "scikit-learn": "1.9.1"}
    with pytest.raises(BuildError, match="references features.missing.Log, but --code has no features/missing.py"):
        model_needs(scan("features.missing.Log"), source(tmp_path, code), TRAINING)


def test_a_model_the_repository_already_covers_uses_its_requirements():
    default = model_source(None)
    needs = model_needs(scan_model(default.artifact), default, environment())
    assert requirements_file(needs) == ROOT / "requirements.txt"


def test_other_needs_get_a_requirements_file_of_their_own(tmp_path, monkeypatch):
    compiled = []

    def fake_compile(requirements_in: Path, requirements_txt: Path) -> None:
        compiled.append(requirements_in.read_text())
        assert requirements_txt.read_text() == (ROOT / "requirements.txt").read_text()  # the pins it starts from

    monkeypatch.setattr(bundle_requirements, "compile_requirements", fake_compile)
    needs = Needs({"scikit-learn": "1.9.1", "lightgbm": "4.7.0", "pandas": None})
    first = requirements_file(needs, cache=tmp_path)
    assert first == requirements_file(needs, cache=tmp_path) and len(compiled) == 1  # cached
    lines = compiled[0].splitlines()
    assert {"lightgbm==4.7.0", "pandas", "scikit-learn==1.9.1", "flask", "waitress"} <= set(lines)
    assert "scikit-learn" not in lines  # the pin replaces the repository's unpinned name


def test_update_keeps_what_the_default_bundle_needs(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "service", tmp_path / "service")
    shutil.copytree(ROOT / "modelcard", tmp_path / "modelcard")
    for name in ("requirements.in", "requirements.txt"):
        shutil.copyfile(ROOT / name, tmp_path / name)
    monkeypatch.setattr(requirements, "compile_requirements", lambda i, o: o.write_text("x==1\n"))
    requirements.update(tmp_path, also=["lightgbm"])
    assert "lightgbm" in requirements.listed_packages(tmp_path / "requirements.in")
    with pytest.raises(BuildError, match="listed but not needed: lightgbm"):
        requirements.check(tmp_path)


def test_the_environment_is_read_from_its_interpreter():
    env = environment(sys.executable)
    assert env.distributions_of("sklearn") == ["scikit-learn"]
    assert env.version_of("scikit-learn") == __import__("sklearn").__version__
    with pytest.raises(BuildError, match="--python /nonexistent/python: cannot run it"):
        environment("/nonexistent/python")
