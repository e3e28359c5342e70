"""The default image and `--prune` of the same bundle, for modules that run every test against both:
`from .variants import default_and_pruned  # noqa: F401` overrides `image` in that module."""
from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module", params=["default", "pruned"], name="image")
def default_and_pruned(request, default_image) -> dict[str, Any]:
    return request.getfixturevalue("pruned_image") if request.param == "pruned" else default_image
