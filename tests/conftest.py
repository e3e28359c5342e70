"""Shared fixtures: the app from its factory, for each bundle, and its test client."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.app import create_app
from service.state import EXTENSION

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = {"diabetes": ROOT / "models" / "diabetes", "iris": ROOT / "models" / "iris"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow container tests run last, in their units of work (tests/container/lanes.py; the sort is stable:
    each module keeps its order)."""
    from .container.lanes import arrange
    arrange(items)


@pytest.fixture(scope="session", params=sorted(BUNDLES))
def app(request: pytest.FixtureRequest):
    return create_app({"MODEL_DIR": str(BUNDLES[request.param]), "MAX_ROWS": 50, "MAX_BODY_BYTES": 64 * 1024})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def service(app):
    return app.extensions[EXTENSION]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The models users bring (tests/byo_models.py), trained once per session."""
    from .byo_models import train_all
    return train_all(tmp_path_factory.mktemp("code"))


@pytest.fixture()
def bundle_copy(tmp_path: Path) -> Path:
    """A writable copy of the default bundle, for tampering."""
    target = tmp_path / "bundle"
    shutil.copytree(BUNDLES["diabetes"], target)
    return target
