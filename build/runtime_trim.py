"""build/runtime-trim.txt, read and matched: what the runtime base leaves out of its Debian packages.

One home for two users: imagebuild/rootfs.py leaves the paths out of the base, and build/compile_imported.py
(in the builder) stops a build whose model imports a module the base will not have. Standard library only.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

LIST = Path(__file__).with_name("runtime-trim.txt")


def patterns(path: Path = LIST) -> tuple[str, ...]:
    """The list's globs, relative to / (a trailing / stands for a whole folder)."""
    lines = (raw.split("#", 1)[0].strip() for raw in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line)


def trimmed(name: str, globs: tuple[str, ...]) -> bool:
    """Whether a path relative to / (usr/lib/python3.13/sqlite3/dump.py) is left out."""
    for pattern in globs:
        if pattern.endswith("/"):
            if name == pattern[:-1] or name.startswith(pattern):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False
