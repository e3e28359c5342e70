"""The release workflow parses and publishes with the same script the README documents."""
from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "publish.yml"


def load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_runs_on_version_tags_only():
    triggers = load()[True]  # YAML 1.1 reads the key `on` as true
    assert triggers == {"push": {"tags": ["v*"]}}


def test_tests_run_before_any_push():
    steps = load()["jobs"]["publish"]["steps"]
    runs = [step.get("run", "") for step in steps]
    test_index = next(i for i, run in enumerate(runs) if ".ci/run" in run)
    push_indexes = [i for i, run in enumerate(runs) if "--push" in run]
    assert push_indexes and all(i > test_index for i in push_indexes)


def test_publishes_to_ghcr_and_docker_hub_with_the_build_script():
    steps = {step.get("name"): step for step in load()["jobs"]["publish"]["steps"]}
    ghcr, hub = steps["Publish to GHCR"], steps["Publish to Docker Hub"]
    assert 'scripts/build.py --push "$image"' in ghcr["run"] and "ghcr.io/" in ghcr["run"]
    assert ghcr["env"]["REGISTRY_PASSWORD"] == "${{ secrets.GITHUB_TOKEN }}"
    assert "scripts/build.py --push" in hub["run"] and "DOCKERHUB_USERNAME" in hub["if"]
    assert hub["env"]["REGISTRY_PASSWORD"] == "${{ secrets.DOCKERHUB_TOKEN }}"
    assert load()["jobs"]["publish"]["permissions"] == {"contents": "read", "packages": "write"}
