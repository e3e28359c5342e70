"""A requirement that ships no wheel is built into a wheel in the builder, with no network, hash-checked."""
from __future__ import annotations

import pytest

from imagebuild import docker_build, platforms, wheels

pytestmark = pytest.mark.container

# docopt 0.6.2 is published as an sdist only (pure Python, setuptools backend).
SDIST_ONLY = ("docopt==0.6.2 \\\n"
              "    --hash=sha256:49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491\n")


def test_sdist_only_requirement_is_built_in_the_builder(tmp_path, docker_client, image):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(SDIST_ONLY)
    house = wheels.wheelhouse(requirements, cache=tmp_path / "cache")
    names = sorted(path.name for path in house.iterdir())
    assert "docopt-0.6.2.tar.gz" in names
    assert any(name.startswith("setuptools-") and name.endswith(".whl") for name in names), names

    base = image["bases"]["builder"]
    tag = "sklearn-model-service-sdist-test:latest"
    context = docker_build.builder_context(house, requirements)
    docker_build.build(docker_client, context, "Dockerfile.builder", tag, {"BUILDER_BASE": base},
                       {docker_build.BUILD_LABEL: tag}, platforms.of_engine(docker_client))
    try:
        output = docker_client.containers.run(
            tag, ["/opt/venv/bin/python", "-c", "import docopt, sys; print(docopt.__version__, docopt.__file__)"],
            network_mode="none", remove=True)
        assert output.decode().startswith("0.6.2 /opt/venv/lib/python3.13/site-packages/docopt.py")
    finally:
        docker_client.images.remove(tag, force=True)
