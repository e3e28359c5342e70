"""deploy/: the manifests name one placeholder image, and rendering pins it to the pushed digest everywhere."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imagebuild import BuildError
from imagebuild.manifests import DEPLOY, PLACEHOLDER, render

PINNED = "127.0.0.1:5000/team/churn@sha256:" + "ab" * 32


def images(path: Path) -> list[str]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(v for k, v in node.items() if k == "image" and isinstance(v, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for document in yaml.safe_load_all(path.read_text()):
        walk(document)
    return found


def test_every_image_in_deploy_is_the_placeholder():
    named = {path.relative_to(DEPLOY).as_posix(): images(path) for path in DEPLOY.rglob("*.yaml")}
    assert named["kubernetes/deployment.yaml"] == [PLACEHOLDER]
    assert named["kserve/inferenceservice.yaml"] == [PLACEHOLDER]
    assert {image for found in named.values() for image in found} == {PLACEHOLDER}


def test_render_pins_the_pushed_digest(tmp_path: Path):
    written = render(PINNED, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*.yaml"))
    assert images(tmp_path / "kubernetes/deployment.yaml") == [PINNED]
    assert images(tmp_path / "kserve/inferenceservice.yaml") == [PINNED]
    assert all(PLACEHOLDER not in p.read_text() for p in written)


@pytest.mark.parametrize("pinned", ["churn:1.0", "churn@sha256:abc", "a b@sha256:" + "0" * 64])
def test_render_refuses_what_is_not_a_digest(tmp_path: Path, pinned):
    with pytest.raises(BuildError, match="is not REPOSITORY@sha256"):
        render(pinned, tmp_path)


def test_the_deployment_keeps_the_drain_inside_the_grace_period():
    deployment = yaml.safe_load((DEPLOY / "kubernetes/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert pod["terminationGracePeriodSeconds"] > int(env["SERVICE_DRAIN_SECONDS"])
