"""Bring your own model: each kind of model users ship goes from a fitted-model file to a running image with the
one documented command, runs read-only with no capabilities, and answers rows with text and nulls exactly as
model.predict does here, in the environment it was trained in."""
from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import docker.errors
import numpy as np
import pytest

from imagebuild import cli, docker_build

from ..byo_models import KINDS
from .conftest import BUDGET_MB, remove_build, run_container, tag

pytestmark = pytest.mark.container
def rows_body(kind: str, rows: Any, names: list[str]) -> bytes:
    if isinstance(rows, np.ndarray):
        return json.dumps([dict(zip(names, map(float, row), strict=True)) for row in rows]).encode()
    return rows.to_json(orient="records").encode()


@pytest.mark.parametrize("kind", KINDS)
def test_the_image_answers_exactly_as_model_predict(byo, trained, kind, docker_client, request):
    report = byo(kind)
    item = trained[kind]
    with run_container(docker_client, report["image"], request) as running:
        _, _, metadata = running.call("GET", "/metadata")
        names = [f["name"] for f in metadata["card"]["features"]]
        status, _, answer = running.call("POST", "/predict", raw=rows_body(kind, item.rows, names),
                                         headers={"Content-Type": "application/json"})
        assert status == 200, answer
        assert answer["predictions"] == item.model.predict(item.rows).tolist()
        if hasattr(item.model, "predict_proba"):
            labels = [str(label) for label in item.model.classes_]
            assert [[row[label] for label in labels] for row in answer["probabilities"]] == \
                item.model.predict_proba(item.rows).tolist()
        _, _, v2 = running.call("GET", f"/v2/models/{metadata['card']['name']}")
        records = json.loads(rows_body(kind, item.rows[:5], names))
        tensors = [{"name": i["name"], "shape": [5], "datatype": i["datatype"],
                    "data": [record[i["name"]] for record in records]} for i in v2["inputs"]]
        status, _, inferred = running.call("POST", f"/v2/models/{metadata['card']['name']}/infer",
                                           {"inputs": tensors})
        assert status == 200 and inferred["outputs"][0]["data"] == item.model.predict(item.rows[:5]).tolist()
        logs = running.container.logs().decode()
        assert "Traceback" not in logs and "feature names" not in logs
        assert all(line.startswith("{") for line in logs.splitlines())


@pytest.mark.parametrize("kind,pandas", [("linear", False), ("forest", True), ("lightgbm", True)])
def test_pandas_only_when_the_model_needs_it(byo, kind, pandas, docker_client):
    report = byo(kind)
    packages = {p["name"] for p in report["packages"]}
    assert ("pandas" in packages) is pandas
    output = docker_client.containers.run(report["image"], entrypoint=["/opt/venv/bin/python3", "-c",
                                          "import importlib.util as u; print(u.find_spec('pandas') is not None)"],
                                          remove=True, network_mode="none")
    assert output.decode().strip() == str(pandas)


def test_the_users_code_and_lightgbm_are_in_their_images(byo, docker_client):
    own = byo("own")["image"]
    listing = docker_client.containers.run(own, entrypoint=["/opt/venv/bin/python3", "-c",
                                           "import homefeatures, os; print(homefeatures.__file__)"],
                                           remove=True, network_mode="none")
    assert listing.decode().strip() == "/app/code/homefeatures/__init__.py"
    assert "lightgbm" in {p["name"] for p in byo("lightgbm")["packages"]}


def test_the_report_describes_the_served_model(byo):
    model = byo("boosting")["model"]
    assert model["task"] == "classification" and model["input"] == "dataframe"
    city = next(f for f in model["features"] if f["name"] == "city")
    assert city == {"name": "city", "type": "category", "nullable": True, "values": 4, "closed": False}
    assert byo("boosting")["budget"] == {"limit": 400_000_000, "source": "--size-budget"}


def test_builds_keep_to_their_own_images(byo, image, docker_client):
    byo("linear")
    assert docker_client.images.get("byo-linear-builder:test")
    assert docker_client.images.get(image["image"])  # the default image, built first, is still there
    assert docker_client.images.get(docker_build.builder_reference(image["image"]))


def test_a_rebuild_of_the_same_model_starts_from_its_app_stage(byo, docker_client, tmp_path):
    """The app stage (the card derived, the code compiled) outlives the build's pruning under its own tag: a
    rebuild of the same model runs none of its steps again, and gives the same image."""
    first = byo("linear")
    model, sample = byo.files("linear")
    stage = docker_client.images.get(docker_build.stage_reference(first["image"])).id
    assert cli.main(["--model", str(model), "--sample", str(sample), "--tag", first["image"], "--size-budget",
                     BUDGET_MB, "--report", str(tmp_path / "again.json")]) == 0
    # made again, its steps would have given other ids (their containers' times)
    assert docker_client.images.get(docker_build.stage_reference(first["image"])).id == stage
    assert json.loads((tmp_path / "again.json").read_text())["id"] == first["id"]


def test_pruning_touches_only_the_reference_being_built(docker_client, image):
    """Two references each leave an untagged image behind; pruning one leaves the other's."""
    base = image["bases"]["runtime"]
    made = {(reference, revision): build_labelled(docker_client, base, reference, revision)
            for reference in ("prune-mine:1", "prune-other:1") for revision in ("1", "2")}  # "2" takes the tag
    try:
        docker_build.prune_superseded(docker_client, "prune-mine:1")
        ids = {i.id for i in docker_client.images.list(all=True)}
        assert made["prune-mine:1", "1"] not in ids and made["prune-other:1", "1"] in ids
        assert made["prune-mine:1", "2"] in ids  # tagged: never pruned
    finally:
        for image_id in made.values():
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(image_id, force=True)
        docker_build.prune_dangling(docker_client, TEST_LABEL, "this test's steps")  # the builds' own steps


TEST_LABEL = "sklearn-model-service.test=prune"


def build_labelled(client: Any, base: str, reference: str, revision: str) -> str:
    """An image on `base` tagged `reference`, with this build's label, a revision and the test's label."""
    key, value = TEST_LABEL.split("=")
    image, _ = client.images.build(fileobj=io.BytesIO(f"FROM {base}\n".encode()), tag=reference,
                                   labels={docker_build.BUILD_LABEL: reference, "revision": revision, key: value},
                                   network_mode="none", rm=True, forcerm=True)
    return image.id


def test_the_served_bundle_can_be_edited_and_built_as_written(byo, tmp_path, docker_client, request):
    """--bundle-out gives the derived bundle; with a new title it builds from the folder (card used as written)."""
    model, sample = byo.files("linear")
    folder = tmp_path / "bundle"
    assert cli.main(["--model", str(model), "--sample", str(sample), "--tag", tag("linear"), "--size-budget", BUDGET_MB,
                     "--bundle-out", str(folder)]) == 0
    card = json.loads((folder / "card.json").read_text())
    assert (folder / "linear.joblib").read_bytes() == model.read_bytes()
    card["title"] = "Diabetes progression, linear"
    (folder / "card.json").write_text(json.dumps(card))
    assert cli.main(["--model", str(folder), "--tag", "byo-linear-hand:test", "--size-budget", BUDGET_MB]) == 0
    try:
        with run_container(docker_client, "byo-linear-hand:test", request) as running:
            assert running.call("GET", "/metadata")[2]["card"] == card
    finally:
        remove_build(docker_client, "byo-linear-hand:test")


def test_a_derivation_failure_in_the_builder_is_one_line(byo, trained, tmp_path, capsys, docker_client):
    model, _ = byo.files("forest")
    sample = tmp_path / "wrong.csv"
    trained["forest"].sample.drop(columns=["rooms"]).to_csv(sample, index=False)
    try:
        assert cli.main(["--model", str(model), "--sample", str(sample), "--tag", "byo-broken:test"]) == 1
        left = docker_client.images.list(all=True, filters={"label": f"{docker_build.BUILD_LABEL}=byo-broken:test"})
        assert [image.tags for image in left] == [["byo-broken-builder:test"]]  # the steps' images are gone
    finally:
        remove_build(docker_client, "byo-broken:test")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: the sample has no column 'rooms': give rows of the training data with a header "
                      "naming the model's features"]


def test_an_image_over_its_budget_keeps_no_tag_and_clean_leaves_nothing(byo, docker_client, capsys):
    """The report is written, the image untagged; with --clean the builder and cache images go too."""
    model, sample = byo.files("linear")
    byo("linear")  # its layers are in the engine's cache: this build takes seconds
    reference = "byo-over-budget:test"
    assert cli.main(["--model", str(model), "--sample", str(sample), "--tag", reference, "--size-budget", "50",
                     "--clean"]) == 1
    assert "MB over the budget of 50.0 MB" in capsys.readouterr().err
    assert docker_client.images.list(all=True, filters={"label": f"{docker_build.BUILD_LABEL}={reference}"}) == []
    assert not [tag for image in docker_client.images.list() for tag in image.tags if "over-budget" in tag]


def test_a_model_needing_a_module_the_runtime_leaves_out_stops_the_build_in_one_line(byo, trained, tmp_path,
                                                                                    capsys, docker_client):
    """The user's package imports sqlite3, which build/runtime-trim.txt leaves out of the runtime base."""
    import shutil
    model, sample = byo.files("own")
    code = tmp_path / "code"
    shutil.copytree(trained["own"].code, code)
    init = code / "homefeatures" / "__init__.py"
    init.write_text("import sqlite3  # noqa: F401\n" + init.read_text())
    try:
        assert cli.main(["--model", str(model), "--sample", str(sample), "--code", str(code),
                         "--tag", "byo-sqlite:test"]) == 1
    finally:
        remove_build(docker_client, "byo-sqlite:test")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: the model imports _sqlite3, sqlite3, which the runtime image leaves out "
                      "(build/runtime-trim.txt): remove the line(s) that cover it and rebuild"]
