"""Reading what a model file needs without loading it: every class it names, its scikit-learn version, whether it
was fitted on a DataFrame, for joblib (plain and compressed), pickle (protocols 2 to 5) and skops files."""
from __future__ import annotations

import os
import pickle
import sys

import joblib
import pytest

from imagebuild import BuildError
from imagebuild.scan import scan_model

from .conftest import BUNDLES


@pytest.fixture(scope="module")
def forest(trained):
    return trained["forest"].model


@pytest.mark.parametrize("suffix,save", [
    ("joblib", lambda m, p: joblib.dump(m, p)),
    ("joblib", lambda m, p: joblib.dump(m, p, compress=3)),
    ("joblib", lambda m, p: joblib.dump(m, p, compress=("gzip", 3))),
    ("joblib", lambda m, p: joblib.dump(m, p, compress=("bz2", 3))),
    ("joblib", lambda m, p: joblib.dump(m, p, compress=("xz", 3))),
    ("joblib", lambda m, p: joblib.dump(m, p, compress=("lzma", 3))),
    ("pkl", lambda m, p: p.write_bytes(pickle.dumps(m, protocol=2))),
    ("pkl", lambda m, p: p.write_bytes(pickle.dumps(m, protocol=4))),
    ("pickle", lambda m, p: p.write_bytes(pickle.dumps(m, protocol=5))),
], ids=["joblib", "zlib", "gzip", "bz2", "xz", "lzma", "pickle-2", "pickle-4", "pickle-5"])
def test_every_class_of_a_pipeline_is_found(forest, tmp_path, suffix, save):
    path = tmp_path / f"model.{suffix}"
    save(forest, path)
    scan = scan_model(path)
    assert {("sklearn.ensemble._forest", "RandomForestRegressor"), ("sklearn.preprocessing._encoders", "OneHotEncoder"),
            ("sklearn.impute._base", "SimpleImputer"), ("sklearn.compose._column_transformer", "ColumnTransformer"),
            ("sklearn.pipeline", "Pipeline")} <= scan.globals
    assert {module.split(".")[0] for module in scan.modules} >= {"sklearn", "numpy"}
    assert scan.sklearn_version == __import__("sklearn").__version__
    assert scan.dataframe


def test_the_default_bundle_was_fitted_on_an_array():
    scan = scan_model(BUNDLES["diabetes"] / "model.joblib")
    assert not scan.dataframe and scan.format == "joblib"
    assert {m.split(".")[0] for m in scan.modules} == {"sklearn", "numpy", "joblib"}


class Payload:
    """Unpickling it would run `touch <path>`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_nothing_is_loaded_or_run(tmp_path):
    marker = tmp_path / "ran"
    runs = tmp_path / "runs.pkl"
    runs.write_bytes(pickle.dumps([Payload(marker)], protocol=4))
    imports = tmp_path / "imports.pkl"
    imports.write_bytes(b"cnosuchmod\nEvil\n(S'x'\ntR.")  # protocol 0: nosuchmod.Evil('x')
    assert (os.system.__module__, "system") in scan_model(runs).globals
    assert ("nosuchmod", "Evil") in scan_model(imports).globals
    assert not marker.exists() and "nosuchmod" not in sys.modules


def test_lightgbm_fitted_on_a_dataframe_is_recognised(tmp_path, trained):
    path = tmp_path / "lgbm.joblib"
    joblib.dump(trained["lightgbm"].model, path)
    scan = scan_model(path)
    assert ("lightgbm.sklearn", "LGBMClassifier") in scan.globals and scan.dataframe


def test_skops_files_name_their_types(tmp_path, trained):
    import skops.io
    path = tmp_path / "model.skops"
    skops.io.dump(trained["linear"].model, path)
    scan = scan_model(path)
    assert scan.format == "skops" and ("sklearn.linear_model._base", "LinearRegression") in scan.globals
    assert scan.sklearn_version == __import__("sklearn").__version__ and not scan.dataframe


@pytest.mark.parametrize("name,content,message", [
    ("model.joblib", b"\x04\x22\x4d\x18rest", "lz4-compressed"),
    ("model.joblib", b"not a pickle at all", "cannot read model.joblib as a joblib file without loading it"),
    ("model.onnx", b"", "unknown model file type .onnx"),
    ("model.skops", b"PK\x05\x06" + b"\0" * 18, "is not a skops file"),
])
def test_unreadable_files_are_one_clear_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BuildError, match=message) as raised:
        scan_model(path)
    assert "\n" not in str(raised.value)
