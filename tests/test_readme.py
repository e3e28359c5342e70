"""The README stays short and true: its configuration table is the settings table in code, every relative link of
the README and of docs/ resolves, and every docs/ page is reachable from the README."""
from __future__ import annotations

import re
from pathlib import Path

from service.config import rows

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_configuration_table_is_the_settings_table():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| variable | default | meaning |"):].split("\n\n")[0].splitlines()[2:]
    assert table == [f"| `{variable}` | `{default}` | {meaning} |" for variable, default, meaning in rows()]


def test_every_relative_link_resolves():
    broken = [(page.name, target) for page in PAGES for target in LINK.findall(page.read_text())
              if not target.startswith(("http://", "https://")) and not (page.parent / target).exists()]
    assert broken == []


def test_every_page_is_linked_from_the_readme_which_stays_short():
    readme = (ROOT / "README.md").read_text()
    linked = {(ROOT / target).resolve() for target in LINK.findall(readme)}
    assert {page.resolve() for page in PAGES[1:]} <= linked
    assert len(readme.encode()) <= 8500


# A path of the repository as the pages name it: a top-level folder or file, then more of it; not a placeholder
# (<key>), a glob or a test id's tail (tests/x.py::test_y names tests/x.py)
NAMED_PATH = re.compile(r"(?<![\w./-])((?:service|derivecard|modelcard|imagebuild|benchmark|build|scripts|tests|docs|"
                        r"deploy|models|\.ci)/[\w./-]*|Dockerfile\.\w+|requirements[\w-]*\.(?:in|txt)|"
                        r"action\.yml|pyproject\.toml)(?![\w<*{])")


def test_every_path_the_pages_name_exists():
    """Every file or folder of this repository that the README and docs/ name, in their text or code, exists."""
    missing = sorted({(page.name, path) for page in PAGES for path in NAMED_PATH.findall(page.read_text())
                      if not (ROOT / path.rstrip(".")).exists()})
    assert missing == []
