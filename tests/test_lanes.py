"""tests/container/lanes.py: every container module has its place, and the modules that share session builds
removed at their process's end are one unit of work."""
from __future__ import annotations

import ast
from pathlib import Path

from .container import lanes

CONTAINER = Path(__file__).resolve().parent / "container"
# Fixtures whose builds one process removes when it ends (tests/container/conftest.py, variants.py): a module
# using one in the other process would find its image gone.
REMOVED_AT_THE_END = {"pruned_image", "byo", "twin_removed", "default_and_pruned"}


def modules() -> dict[str, set[str]]:
    """Each container test module: the names its functions take as parameters and the names it imports."""
    found = {}
    for path in sorted(CONTAINER.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        names = {arg.arg for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) for arg in node.args.args}
        names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
        found[path.stem] = names
    return found


def test_every_container_module_has_its_place_and_every_place_a_module():
    placed = set(lanes.SHARED_BUILDS) | (set(lanes.LONGEST_FIRST) - {lanes.SHARED})
    assert placed == set(modules())


def test_the_modules_using_builds_removed_at_the_end_share_one_process():
    users = {name for name, used in modules().items() if used & REMOVED_AT_THE_END}
    assert users and users <= set(lanes.SHARED_BUILDS), users - set(lanes.SHARED_BUILDS)
