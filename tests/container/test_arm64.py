"""amd64 and arm64 from one command (issue 25): `scripts/build.py --platform linux/amd64,linux/arm64 --push`
pushes one image index; the arm64 image, run under emulation (Debian's qemu-user-static through binfmt_misc,
registered by tests/emulation.py) read-only with no capabilities, answers every example and a few hundred random
rows with the very bytes the amd64 image answers. One multi-platform build serves every test here: its amd64
image is the suite's default image, rebuilt from the build cache, so the cost is the arm64 image's."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from imagebuild import cli, registry as registry_api
from imagebuild.http_calls import call
from service import __version__

from ..emulation import arm64_emulation
from .conftest import BUDGET_MB, PASSWORD, USER, remove_build, run_container, tag

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parents[2]
EMULATED_READY = 600.0  # seconds: scikit-learn's import and the warm-up under qemu (measured: docs/platforms.md)
RANDOM_ROWS = 300
# How an arm64 image runs here: under qemu, with one worker. Each worker's start costs about 50 s of CPU there
# (docs/platforms.md), and these tests compare answers, which one worker gives; the default image's workers are
# tested natively.
EMULATED = {"platform": "linux/arm64", "ready_timeout": EMULATED_READY, "environment": {"SERVICE_WORKERS": "1"}}


@pytest.fixture(scope="module")
def emulation() -> None:
    reason = arm64_emulation()
    if reason:
        pytest.skip(f"arm64 images cannot run here: {reason}")


@pytest.fixture(scope="module")
def multi(emulation, registry, default_image, docker_client, tmp_path_factory) -> Any:
    """The README's multi-platform command, pushing to the suite's registry: (stdout, the two reports, seconds)."""
    folder = tmp_path_factory.mktemp("multi")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "scripts/build.py", "--platform", "linux/amd64,linux/arm64", "--tag", default_image["image"],
         "--push", f"{registry.host}/multi", "--report", str(folder / "report.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "REGISTRY_USERNAME": USER, "REGISTRY_PASSWORD": PASSWORD,
             **{name: value for name, value in os.environ.items() if name == "DOCKER_HOST"}})
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((folder / name).read_text()) for name in ("report.json", "report-arm64.json")]
    print(f"\nmulti-platform build: {seconds:.0f} s; sizes "
          + ", ".join(f"{r['platform']} {r['size'] / 1e6:.1f} MB ({r['compressed_size'] / 1e6:.1f} MB gzip)"
                      for r in reports), file=sys.__stderr__)
    yield result.stdout, reports, seconds
    remove_build(docker_client, reports[1]["image"])


def test_one_index_of_both_platforms_is_pushed_and_printed(multi, registry, default_image):
    stdout, reports, _ = multi
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{registry.host}/multi@sha256:"), stdout
    _, headers, body = registry.api(f"/v2/multi/manifests/{__version__}", accept=registry_api.INDEX_TYPE)
    assert "sha256:" + lines[0].split("@sha256:")[1] == headers["Docker-Content-Digest"]
    index = json.loads(body)
    assert index["mediaType"] == registry_api.INDEX_TYPE
    platforms = [(entry["platform"]["architecture"], entry["platform"].get("variant")) for entry in index["manifests"]]
    assert platforms == [("amd64", None), ("arm64", "v8")]
    for entry, report in zip(index["manifests"], reports, strict=True):
        _, _, manifest = registry.api(f"/v2/multi/manifests/{entry['digest']}", accept=registry_api.MANIFEST_TYPE)
        config = json.loads(registry.api(f"/v2/multi/blobs/{json.loads(manifest)['config']['digest']}")[2])
        assert entry["digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
        assert config["architecture"] == entry["platform"]["architecture"]
        assert json.loads(manifest)["config"]["digest"] == report["id"]  # the config pushed is the image built
    # the engine's own platform is the suite's image, unchanged: one commit, one image
    assert reports[0]["id"] == default_image["id"] and reports[0]["platform"] == "linux/amd64"


def test_each_platform_is_measured_gated_and_recorded(multi):
    _, reports, _ = multi
    amd64, arm64 = reports
    assert arm64["platform"] == "linux/arm64" and arm64["image"].endswith(f"{__version__}-arm64")
    # Issue 25 asks for 5%: met as a node pulls it (gzip); uncompressed, arm64's wheels carry 64 KiB-page padding
    # (build/size-budget.json's arm64_why), so that size is held to its documented allowance by the gate instead.
    assert abs(arm64["compressed_size"] / amd64["compressed_size"] - 1) <= 0.05
    assert arm64["budget"]["limit"] - amd64["budget"]["limit"] == 18_000_000
    for report in reports:
        assert report["size"] <= report["budget"]["limit"]
        assert report["compressed_size"] <= report["budget"]["compressed_limit"]
        sbom = json.loads(Path(report["records"]["sbom"]).read_text())
        debian = [c for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/")]
        arch = report["platform"].split("/")[1]
        assert debian and all(f"arch={arch}" in c["purl"] or "arch=all" in c["purl"] for c in debian)
        statement = json.loads(Path(report["records"]["provenance"]).read_text())
        assert statement["subject"][1]["annotations"]["mediaType"] == registry_api.INDEX_TYPE


def test_the_arm64_image_answers_as_the_amd64_image_bit_for_bit(multi, docker_client, request):
    _, (amd64, arm64), _ = multi
    machine = docker_client.containers.run(arm64["image"], ["-c", "import platform; print(platform.machine())"],
                                           entrypoint="/usr/bin/python3.13", platform="linux/arm64", remove=True,
                                           read_only=True, cap_drop=["ALL"], network_disabled=True)
    assert machine.decode().strip() == "aarch64"  # emulated, not the amd64 image under another name
    with run_container(docker_client, amd64["image"], request) as native, \
            run_container(docker_client, arm64["image"], request, **EMULATED) as emulated:
        _, _, examples = native.call("GET", "/example")
        requests = [example["request"] for example in examples["examples"]]
        _, _, card = native.call("GET", "/metadata")
        rng = np.random.default_rng(25)
        features = card["card"]["features"]
        requests.append([{f["name"]: float(rng.uniform(f["min"], f["max"])) for f in features}
                         for _ in range(RANDOM_ROWS)])
        for body in requests:
            raw = json.dumps(body).encode()
            answers = [call("POST", running.url + "/predict", raw, {"Content-Type": "application/json"})
                       for running in (native, emulated)]
            assert answers[0][0] == 200 and (answers[0][0], answers[0][2]) == (answers[1][0], answers[1][2]), body


def test_a_dataframe_model_answers_on_arm64_as_on_amd64_and_as_model_predict(emulation, trained, tmp_path,
                                                                            docker_client, request):
    """A model is architecture-free, its packages are not: the forest pipeline on a DataFrame (pandas), built for
    both platforms, answers its rows with the same bytes on each, and as model.predict did in training."""
    item = trained["forest"]
    model, sample = tmp_path / "forest.joblib", tmp_path / "forest-sample.csv"
    joblib.dump(item.model, model)
    item.sample.to_csv(sample, index=False)
    reference = tag("forest-multi")
    try:
        assert cli.main(["--platform", "linux/amd64,linux/arm64", "--model", str(model), "--sample", str(sample),
                         "--tag", reference, "--size-budget", BUDGET_MB,
                         "--report", str(tmp_path / "report.json")]) == 0
        raw = item.rows.to_json(orient="records").encode()
        answers = []
        for image, options in ((reference, {}), (f"{reference}-arm64", EMULATED)):
            with run_container(docker_client, image, request, **options) as running:
                status, _, body = call("POST", running.url + "/predict", raw, {"Content-Type": "application/json"})
                assert status == 200, body
                answers.append(body)
        assert answers[0] == answers[1]
        assert json.loads(answers[0])["predictions"] == item.model.predict(item.rows).tolist()
        assert "pandas" in {p["name"] for p in json.loads((tmp_path / "report-arm64.json").read_text())["packages"]}
    finally:
        remove_build(docker_client, f"{reference}-arm64")
        remove_build(docker_client, reference)
