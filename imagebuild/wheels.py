"""The wheelhouse: every locked requirement for the image, downloaded beforehand and hash-checked by pip.

For each requirement, the wheel for the image's platform (cp313, manylinux_2_28_x86_64); where none exists, the
sdist (still checked against requirements.txt's hashes) plus the wheels of its declared build backend, so the
builder can build it into a wheel with no network.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

from . import ROOT, BuildError
from .progress import say
from .requirements import normalize

CACHE = ROOT / ".cache" / "wheelhouse"
# glibc 2.28 wheels run on the runtime's glibc (Debian 13: 2.41); pip also accepts every older manylinux tag.
PLATFORM = "manylinux_2_28_x86_64"
PYTHON_VERSION = "3.13"
TARGET = ["--platform", PLATFORM, "--python-version", PYTHON_VERSION, "--implementation", "cp"]
DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0"]  # PEP 517's fallback when an sdist has no [build-system]
# Compiled against BLAS, Fortran or each other: never built from source here, a wheel or a clear error.
WHEEL_ONLY = {"numpy", "scipy", "scikit-learn", "pandas", "lightgbm", "xgboost"}


def require_wheel(name: str, version: str, why: str) -> None:
    """Fail with one line unless `name==version` publishes a wheel for the image (resolved, not downloaded)."""
    with tempfile.TemporaryDirectory() as target:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
                                 "--ignore-installed", "--disable-pip-version-check", "--only-binary=:all:",
                                 *TARGET, "--target", target, f"{name}=={version}"], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{name} {version} ({why}) publishes no wheel for CPython {PYTHON_VERSION} on {PLATFORM}, "
                         f"the image's runtime: save the model with a {name} release that has one")


def blocks(requirements: Path) -> list[str]:
    """Each requirement with its --hash lines, as pip-compile writes them; comments dropped."""
    result: list[str] = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and result:
            result[-1] += "\n" + line
        else:
            result.append(line)
    return result


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                           *args], capture_output=True, text=True)


def _error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    return (lines or result.stderr.strip().splitlines() or ["no output"])[0]


def build_requires(sdist: Path) -> list[str]:
    """The sdist's [build-system].requires (PEP 518)."""
    opener = zipfile.ZipFile if sdist.suffix == ".zip" else tarfile.open
    with opener(sdist) as archive:
        names = archive.namelist() if isinstance(archive, zipfile.ZipFile) else archive.getnames()
        pyproject = next((n for n in names if n.count("/") == 1 and n.endswith("/pyproject.toml")), None)
        if pyproject is None:
            return DEFAULT_BUILD_REQUIRES
        data = archive.read(pyproject) if isinstance(archive, zipfile.ZipFile) else \
            archive.extractfile(pyproject).read()
    return tomllib.loads(data.decode("utf-8")).get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES)


def fetch(block: str, target: Path) -> None:
    """One requirement: its platform wheel, else its sdist and build backend (as wheels for the image)."""
    name = re.split(r"[=<>!~ ;\\]", block, maxsplit=1)[0]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as single:
        single.write(block + "\n")
        single.flush()
        wheel = _pip("--no-deps", "--only-binary=:all:", *TARGET, "--require-hashes", "-d", str(target),
                     "-r", single.name)
        if wheel.returncode == 0:
            return
        if normalize(name) in WHEEL_ONLY:
            version = re.search(r"==([^\s;\\]+)", block)
            raise BuildError(f"{name} {version.group(1) if version else ''} publishes no wheel for CPython "
                             f"{PYTHON_VERSION} on {PLATFORM} (the image's runtime), and it is not built from "
                             f"source here: train and save the model with a {name} release that has one")
        before = set(target.iterdir())
        sdist = _pip("--no-deps", "--no-binary=:all:", "--require-hashes", "-d", str(target), "-r", single.name)
        if sdist.returncode != 0:
            raise BuildError(f"{name}: no wheel for {PLATFORM} and Python {PYTHON_VERSION} "
                             f"({_error(wheel)}), and no sdist either ({_error(sdist)})")
    archive = next(path for path in set(target.iterdir()) - before)
    requires = build_requires(archive)
    say(f"{name} has no {PLATFORM} wheel: the builder will build {archive.name} (build backend: {', '.join(requires)})")
    backend = _pip("--only-binary=:all:", *TARGET, "-d", str(target), *requires)
    if backend.returncode != 0:
        raise BuildError(f"{name}: cannot fetch its build requirements {requires}: {_error(backend)}")


def wheelhouse(requirements: Path, cache: Path = CACHE) -> Path:
    """Fill (once per requirements.txt) a cache folder with what the builder installs; returns the folder."""
    key = hashlib.sha256(requirements.read_bytes() + PLATFORM.encode()).hexdigest()[:12]
    target = cache / key
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    say(f"downloading wheels for cp{PYTHON_VERSION.replace('.', '')} {PLATFORM}")
    for block in blocks(requirements):
        fetch(block, target)
    done.write_text("ok\n")
    return target
