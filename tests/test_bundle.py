"""A bundle is verified before it is unpickled; start-up fails with one clear line when it cannot be served."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from imagebuild.http_calls import free_port
from service.bundle import BundleError, load_bundle

ROOT = Path(__file__).resolve().parent.parent


def edit_card(bundle: Path, change) -> None:
    card = json.loads((bundle / "card.json").read_text())
    change(card)
    (bundle / "card.json").write_text(json.dumps(card))


def test_default_bundle_loads(bundle_copy):
    bundle = load_bundle(bundle_copy)
    assert bundle.feature_names[0] == "age"
    assert bundle.sha256 == bundle.card["artifact"]["sha256"]


def test_tampered_artifact_is_refused(bundle_copy):
    with (bundle_copy / "model.joblib").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="sha256 .* refusing to load it"):
        load_bundle(bundle_copy)


def drop_last_feature(card: dict) -> None:
    name = card["features"].pop()["name"]
    for example in card["examples"]:
        example.pop(name)


@pytest.mark.parametrize("change,message", [
    (drop_last_feature, "expects 10 features but the card lists 9"),
    (lambda c: c.pop("artifact"), "card: missing key 'artifact'"),
    (lambda c: c.update(task="ranking"), "card.task: must be one of \"regression\", \"classification\""),
    (lambda c: c["features"].append(dict(c["features"][0])), "the name 'age' is used 2 times"),
    (lambda c: c["artifact"].update(sha256="abc"), "card.artifact.sha256: \"abc\" does not match"),
    (lambda c: c.update(sklearn_version="0.20.3"), "saved with scikit-learn 0.20.3"),
    (lambda c: c["artifact"].update(file="gone.joblib"), "artifact not found"),
])
def test_wrong_card_is_refused(bundle_copy, change, message):
    edit_card(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_missing_and_unreadable_cards(tmp_path, bundle_copy):
    with pytest.raises(BundleError, match="model card not found"):
        load_bundle(tmp_path)
    (bundle_copy / "card.json").write_text("{not json")
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(bundle_copy)


def test_classifier_labels_must_match_the_estimator(tmp_path):
    import shutil
    target = tmp_path / "iris"
    shutil.copytree(ROOT / "models" / "iris", target)
    edit_card(target, lambda c: c["output"].update(labels=["a", "b", "c"]))
    with pytest.raises(BundleError, match="classes .* differ from the card's labels"):
        load_bundle(target)


def test_examples_fall_back_to_the_feature_ranges(bundle_copy):
    from service.app import create_app
    from service.state import EXTENSION
    edit_card(bundle_copy, lambda c: c.pop("examples"))
    app = create_app({"MODEL_DIR": str(bundle_copy)})
    examples = app.extensions[EXTENSION].examples
    age = app.extensions[EXTENSION].bundle.card["features"][0]
    assert examples[0]["request"]["age"] == round(age["min"] + 0.25 * (age["max"] - age["min"]), 4)
    client = app.test_client()
    for example in examples:
        assert client.post("/predict", json=example["request"]).get_json() == example["response"]


@pytest.mark.parametrize("workers", ["1", "3"])
def test_start_up_fails_with_one_line_and_exit_2(bundle_copy, workers):
    (bundle_copy / "model.joblib").write_bytes(b"not a pickle")
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"MODEL_DIR": str(bundle_copy), "PATH": "/usr/bin:/bin", "SERVICE_PORT": str(free_port()), "SERVICE_WORKERS": workers})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: artifact ") and "sha256" in lines[0]


@pytest.mark.parametrize("variable,value,message", [
    ("SERVICE_PORT", "eighty", "error: SERVICE_PORT='eighty' is not a valid int"),
    ("SERVICE_THREADS", "0", "error: SERVICE_THREADS='0' must be greater than zero"),
    ("SERVICE_LOG_LEVEL", "LOUD", "error: SERVICE_LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR"),
    ("SERVICE_WORKERS", "-1", "error: SERVICE_WORKERS='-1' must be zero or more"),
    ("SERVICE_PIN_CPUS", "2", "error: SERVICE_PIN_CPUS='2' must be 0 or 1"),
    ("SERVICE_BATCH_MAX_WAIT_MS", "soon", "error: SERVICE_BATCH_MAX_WAIT_MS='soon' is not a valid float"),
])
def test_bad_setting_fails_with_one_line_and_exit_2(variable, value, message):
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True,
                            env={variable: value, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == message


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_fails_with_one_line_and_exit_2(workers):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, env={"SERVICE_PORT": str(port), "SERVICE_WORKERS": workers,
                                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: cannot serve on 127.0.0.1:{port}: [Errno 98] Address already in use "
                                     f"(another server on that port? set SERVICE_PORT)")


def test_help_prints_every_setting_and_exits_0():
    from service.config import SETTINGS
    result = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert all(variable in result.stdout for variable, *_ in SETTINGS.values())
    wrong = subprocess.run([sys.executable, "-m", "service", "--port=80"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert wrong.returncode == 2 and "unrecognized arguments: --port=80" in wrong.stderr


def test_a_model_that_fails_its_warm_up_is_one_line_and_exit_2(bundle_copy):
    """The card's own example is refused by the model (1e300 overflows gradient boosting's float32)."""
    edit_card(bundle_copy, lambda c: c["examples"][0].update(age=1e300))
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"MODEL_DIR": str(bundle_copy), "PATH": "/usr/bin:/bin", "SERVICE_PORT": str(free_port()), "SERVICE_WORKERS": "1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if not line.startswith("{")] == [
        f"error: {bundle_copy}: the model cannot answer its example (record): the model rejected the input: "
        f"Input X contains infinity or a value too large for dtype('float32')."]
    assert all(json.loads(line)["logger"] in ("py.warnings", "service.predictor")  # warnings, the inference path
               for line in lines if line.startswith("{"))


def test_warnings_become_json_log_lines_once_each(capsys):
    import json
    import warnings
    from service import logs
    logs.configure("INFO")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for _ in range(3):
                warnings.warn("X does not have valid feature names", UserWarning, stacklevel=1)
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        logging.getLogger().handlers.clear()
    assert len(lines) == 1
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "py.warnings"
    assert lines[0]["message"] == "X does not have valid feature names" and lines[0]["category"] == "UserWarning"
