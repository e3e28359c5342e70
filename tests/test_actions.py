"""The workflows and the reusable action (issue 26) without GitHub: zizmor finds nothing, GitHub's schemas (as
check-jsonschema vendors them) accept them, every action is pinned by commit with its version beside it, jobs ask
for the least permissions and keep no checkout credentials, no `run:` line holds an expression; the action's
inputs become the build's arguments; the simulated runner (tests/actions_harness.py) evaluates only what it
knows. tests/container/test_action.py runs the action on a model repository."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagebuild.action import arguments

from .actions_harness import evaluate

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
FILES = [*WORKFLOWS, ROOT / "action.yml"]
BIN = Path(sys.executable).parent


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def steps_of(document: dict) -> list[dict]:
    if "runs" in document:
        return document["runs"]["steps"]
    return [step for job in document["jobs"].values() for step in job["steps"]]


def test_zizmor_finds_nothing():
    result = subprocess.run([str(BIN / "zizmor"), "--offline", "--no-progress", *map(str, FILES)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


@pytest.mark.parametrize("schema,paths", [("vendor.github-workflows", WORKFLOWS),
                                          ("vendor.github-actions", [ROOT / "action.yml"])])
def test_githubs_schemas_accept_them(schema, paths):
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_pinned_least_privilege_no_credentials_no_expressions_in_run(path):
    document = load(path)
    for step in steps_of(document):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            line = next(line for line in path.read_text().splitlines() if step["uses"] in line)
            assert re.search(r"#\s*v\d+\.\d+\.\d+$", line), f"no version comment: {line}"
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        assert "${{" not in step.get("run", ""), f"an expression in a run line: {step.get('name')}"
    if "jobs" in document:
        assert document["permissions"] == {}
        for name, job in document["jobs"].items():
            granted = job["permissions"]
            assert granted.get("contents") == "read", name
            assert set(granted) <= {"contents", "packages"}, name


def test_ci_runs_the_tests_and_the_size_check_on_pull_requests_and_main():
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci[True] == {"pull_request": None, "push": {"branches": ["main"]}}  # YAML 1.1 reads `on` as true
    runs = {name: [step.get("run", "") for step in job["steps"]] for name, job in ci["jobs"].items()}
    assert "sudo -E bash .ci/run" in runs["test"]
    check = next(run for run in runs["size"] if "compare_sizes.py" in run)
    assert '--base "$BASE_SHA"' in check and '--max-growth "$MAX_GROWTH_MB"' in check
    assert "$GITHUB_STEP_SUMMARY" in check
    assert ci["jobs"]["size"]["steps"][0]["with"]["fetch-depth"] == 0  # the base commit is there to build


def test_the_actions_inputs_become_the_builds_arguments(tmp_path):
    environ = {"GITHUB_WORKSPACE": str(tmp_path), "INPUT_MODEL": "models/churn.joblib",
               "INPUT_SAMPLE": "data/sample.csv", "INPUT_CODE": "src/features\nsrc/more, other",
               "INPUT_TAG": "churn:1.0", "INPUT_SIZE_BUDGET": "400", "INPUT_COMPARE": "base.json",
               "INPUT_MAX_GROWTH": "5", "INPUT_PUSH": "ghcr.io/me/churn", "INPUT_GRPC": "true",
               "INPUT_PLATFORMS": "linux/arm64/v8, linux/amd64"}
    assert arguments(environ) == [
        "--model", str(tmp_path / "models/churn.joblib"), "--platform", "linux/arm64,linux/amd64",
        "--sample", str(tmp_path / "data/sample.csv"),
        "--tag", "churn:1.0", "--size-budget", "400", "--compare", str(tmp_path / "base.json"),
        "--max-growth", "5", "--push", "ghcr.io/me/churn", "--code", str(tmp_path / "src/features"),
        "--code", str(tmp_path / "src/more"), "--code", str(tmp_path / "other"), "--grpc"]
    assert arguments({**environ, "INPUT_PLATFORMS": ""})[-1] == "--grpc"  # default: the runner's own
    with pytest.raises(ValueError, match="input 'model' is required"):
        arguments({**environ, "INPUT_MODEL": " "})
    with pytest.raises(ValueError, match="input 'platforms': platform 'linux/s390x': the image is built for"):
        arguments({**environ, "INPUT_PLATFORMS": "linux/s390x"})
    declared = set(load(ROOT / "action.yml")["inputs"])
    mapped = {key[6:].lower().replace("_", "-") for key in
              load(ROOT / "action.yml")["runs"]["steps"][1]["env"] if key.startswith("INPUT_")}
    assert mapped | {"registry-username", "registry-password"} == declared


def test_the_harness_evaluates_only_what_it_knows():
    context = {"inputs": {"model": "m.joblib"}, "steps": {"build": {"id": "sha256:1"}}, "action_path": "/a"}
    assert evaluate("${{ inputs.model }} ${{steps.build.outputs.id}} ${{ github.action_path }}", context) == \
        "m.joblib sha256:1 /a"
    with pytest.raises(ValueError, match="does not evaluate"):
        evaluate("${{ github.event.pull_request.title }}", context)
