"""The reusable action (action.yml, issue 26) on a model repository made here, run by tests/actions_harness.py (a
simulation of GitHub's runner, not the runner): the first commit's model is built, gated and pushed to the local
registry, its outputs name the pushed digest; a second commit whose model needs pandas is compared with the first
build's report, its growth shows in the job summary, and --max-growth fails it without pushing."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imagebuild import ROOT

from ..actions_harness import run_action
from .test_byo_round_two import TRAINING
from ..venvs import venv
from .conftest import PASSWORD, USER, remove_build

pytestmark = pytest.mark.container
TRAIN = """
import sys
import joblib, pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
frame = load_iris(as_frame=True).frame.drop(columns="target")
target = load_iris().target
with_names = sys.argv[1] == "dataframe"
model = LogisticRegression(max_iter=500).fit(frame if with_names else frame.to_numpy(), target)
joblib.dump(model, "model.joblib")
frame.head(60).to_csv("sample.csv", index=False)
"""
TAG = "action-model:test"
# The user's training environment: round two's pins without xgboost, in a venv of its own. Sharing round two's,
# this module waited for the other test process to make it (35 s in ci50), or both made it at once.
TRAINING_HERE = [requirement for requirement in TRAINING if not requirement.startswith("xgboost")]


def commit(repository: Path, python: Path, kind: str, message: str) -> None:
    """Train as a user does, in the repository, and commit the model."""
    subprocess.run([str(python), "-c", TRAIN, kind], cwd=repository, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repository, check=True)
    subprocess.run(["git", "-c", "user.name=user", "-c", "user.email=user@example.invalid", "commit", "-qm",
                    message], cwd=repository, check=True)


def test_the_action_builds_gates_pushes_and_fails_on_growth(tmp_path, registry, docker_client):
    python = venv("action", TRAINING_HERE)
    repository = tmp_path / "model-repo"
    repository.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repository, check=True)
    commit(repository, python, "array", "a model fitted on an array")
    inputs = {"model": "model.joblib", "sample": "sample.csv", "python": str(python), "tag": TAG,
              "size-budget": "400", "push": f"{registry.host}/action-model", "registry-username": USER,
              "registry-password": PASSWORD}
    try:
        first = run_action(ROOT, inputs, repository, tmp_path / "runner")
        assert not first.failed, first.steps[-1]["stderr"][-3000:]
        outputs = first.outputs
        assert outputs["image"] == TAG and outputs["id"].startswith("sha256:")
        assert outputs["pinned"] == f"{registry.host}/action-model@{outputs['digest']}"
        assert outputs["digest"].startswith("sha256:") and int(outputs["size"]) > int(outputs["compressed-size"])
        status, _, _ = registry.api(f"/v2/action-model/manifests/{outputs['digest']}", method="HEAD",
                                    accept="application/vnd.docker.distribution.manifest.v2+json")
        assert status == 200
        assert first.summary == ""  # nothing to compare with
        base_report = tmp_path / "base-report.json"  # kept as a workflow would keep it, as an artifact
        base_report.write_text(Path(outputs["report"]).read_text())
        assert json.loads(base_report.read_text())["image"] == TAG

        commit(repository, python, "dataframe", "the same model fitted on a DataFrame: pandas comes along")
        second = run_action(ROOT, {**inputs, "compare": str(base_report), "max-growth": "5"}, repository,
                            tmp_path / "runner")  # the same runner: its venv is reused
        assert second.failed and second.steps[-1]["code"] == 1
        assert f"error: image {TAG} grew by" in second.steps[-1]["stderr"]
        assert "more than --max-growth 5 MB; largest growth: pandas" in second.steps[-1]["stderr"]
        assert second.summary.startswith("### Image size: ") and "| `pandas` | - |" in second.summary
        (ROOT / "reports").mkdir(exist_ok=True)
        (ROOT / "reports" / "action-size-diff.md").write_text(second.summary)  # for the notes
        assert not docker_client.images.list(name=TAG)  # a failed gate leaves no tag
    finally:
        remove_build(docker_client, TAG)


def test_an_input_the_build_cannot_take_is_one_line(tmp_path):
    outcome = run_action(ROOT, {"model": "model.joblib", "platforms": "linux/amd64,linux/s390x"}, tmp_path,
                         tmp_path / "runner")
    assert outcome.failed and outcome.steps[-1]["code"] == 2
    assert outcome.steps[-1]["stderr"] == ("error: input 'platforms': platform 'linux/s390x': the image is built "
                                           "for linux/amd64 and linux/arm64 (the Debian 13 and manylinux platforms "
                                           "whose packages the lock pins)\n")


def test_the_pull_request_size_check_as_the_workflow_runs_it(tmp_path, default_image, docker_client):
    """ci.yml's size step, its `run:` line as written (without `sudo -E`: the suite runs as root), with the
    variables its job sets: the base here is this very commit, built again from a worktree (so the diff is
    zero and the base build reuses every layer); its image, builder and cache are removed after."""
    import os

    import yaml
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["size"]
    line = next(step["run"] for step in job["steps"] if "compare_sizes.py" in step.get("run", ""))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    summary = tmp_path / "summary.md"
    environment = {**os.environ, "BASE_SHA": head, "MAX_GROWTH_MB": job["env"]["MAX_GROWTH_MB"],
                   "GITHUB_STEP_SUMMARY": str(summary)}
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", line.removeprefix("sudo -E ")],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"sklearn-model-service-base:{head[:12]} -> {default_image['image']}\n")
    assert summary.read_text().startswith("### Image size: ")  # 0 in CI's clean clone; your edits otherwise
    assert not docker_client.images.list(name=f"sklearn-model-service-base:{head[:12]}")
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "dist/compare/base" not in worktrees
