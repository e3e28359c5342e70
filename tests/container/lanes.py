"""How the container tests share two processes (`pytest -m container -n 2 --dist loadgroup`, pytest-xdist).

Each module is one unit of work, so that what it starts for all its tests (a container, a registry, an engine)
is started once and its tests keep their order. The modules in SHARED_BUILDS are one unit together: they use
session builds that are removed when their process ends (the `--prune` image, the bring-your-own builds) or build
and remove the same debug twin. The default image is built once for both processes (conftest.py's
`default_image`). Units start longest first (LONGEST_FIRST, from the durations in docs/testing.md; pyproject.toml
keeps pytest-xdist from reordering them by their number of tests), so that neither process is left with a long
one at the end; a module not listed starts after those that are. The first two units are the shared builds, whose
first test builds the default image, and test_engines, whose first build (on Docker 26) does not need it: the
other process does not wait for it.
"""
from __future__ import annotations

import pytest

SHARED_BUILDS = ("test_image", "test_image_fuzz", "test_docs_browser", "test_clients", "test_supply_chain",
                 "test_byo", "test_publish")
SHARED = "shared builds"
LONGEST_FIRST = (SHARED, "test_engines", "test_arm64", "test_byo_round_two", "test_bench_end_to_end", "test_action",
                 "test_byo_versions", "test_grpc_image", "test_kubernetes", "test_hostile_image", "test_platforms",
                 "test_soak", "test_slow_clients", "test_sdist_build")


def unit(item: pytest.Item) -> str:
    """The unit of work a container test belongs to."""
    module = item.path.stem
    return SHARED if module in SHARED_BUILDS else module


def rank(item: pytest.Item) -> int:
    """Where a container test's unit starts: longest first, unlisted ones last."""
    name = unit(item)
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def arrange(items: list[pytest.Item]) -> None:
    """Mark each container test with its unit (xdist_group) and order them longest unit first (in place: pytest's
    hook gives the list to rearrange)."""
    places = {}
    for item in items:
        if item.get_closest_marker("container") is not None:
            item.add_marker(pytest.mark.xdist_group(unit(item)))
            places[item.nodeid] = 1 + rank(item)
    items.sort(key=lambda item: places.get(item.nodeid, 0))
