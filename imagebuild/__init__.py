"""Build, report, gate and publish the model-serving image (`python scripts/build.py`)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class BuildError(Exception):
    """A failure the user can act on: the message is one line with context and a hint."""


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file (text as UTF-8) so that a reader never sees half of it, and two writers never share a
    temporary file; missing parent folders are created. The file gets the mode open() would give it: an existing
    file's own, else 0o666 less the umask (a temporary file is made 0600, and reports left so could not be read
    by a CI job's other user or a container's)."""
    import os
    import tempfile
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as output:
            os.fchmod(output.fileno(), _mode_for(path))
            output.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _mode_for(path: Path) -> int:
    import os
    import stat
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mask = os.umask(0o022)  # read by setting it: back at once, and meanwhile no looser than the usual
        os.umask(mask)
        return 0o666 & ~mask
