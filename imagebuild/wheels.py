"""The wheelhouse: every locked requirement for the image, downloaded beforehand and hash-checked by pip.

For each requirement, the wheel for the image's platform (cp313, any manylinux tag its glibc runs, for its machine:
imagebuild/platforms.py); where none exists, the sdist (still checked against requirements.txt's hashes) plus the
wheels of its declared build backend, so the builder can build it into a wheel with no network.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

from . import ROOT, BuildError
from .archive import member_bytes
from .platforms import AMD64, PYTHON_VERSION, Platform
from .progress import say
from .requirements import normalize

CACHE = ROOT / ".cache" / "wheelhouse"
COMPLETE = ".complete"  # in a wheelhouse folder once every requirement is in it
DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0"]  # PEP 517's fallback when an sdist has no [build-system]
# Compiled against BLAS, Fortran or each other: never built from source here, a wheel or a clear error.
WHEEL_ONLY = {"numpy", "scipy", "scikit-learn", "pandas", "lightgbm", "xgboost", "xgboost-cpu"}


def target(platform: Platform) -> list[str]:
    """pip's arguments for wheels that run on `platform`'s runtime."""
    return [*(argument for tag in platform.wheel_tags() for argument in ("--platform", tag)),
            "--python-version", PYTHON_VERSION, "--implementation", "cp"]


def has_wheel(name: str, version: str, platform: Platform = AMD64) -> bool:
    """Whether `name==version` publishes a wheel for the image on `platform` (resolved, not downloaded)."""
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
                                 "--ignore-installed", "--disable-pip-version-check", "--only-binary=:all:",
                                 *target(platform), "--target", folder, f"{name}=={version}"],
                                capture_output=True, text=True)
    return result.returncode == 0


def require_wheel(name: str, version: str, why: str, platforms: tuple[Platform, ...] = (AMD64,)) -> None:
    """Fail with one line, naming the oldest later release that would do, unless `name==version` publishes a wheel
    for the image on each of `platforms`."""
    for platform in platforms:
        if has_wheel(name, version, platform):
            continue
        later = oldest_with_wheel(name, version, platform)
        hint = f"{name} {later} is the oldest later release with one" if later else f"no later {name} release has one"
        raise BuildError(f"{name} {version} ({why}) publishes no wheel for {platform.runtime()}, the image's "
                         f"runtime on {platform.name}: save the model with a release that has one ({hint})")


def oldest_with_wheel(name: str, after: str, platform: Platform = AMD64) -> str | None:
    """The oldest release after `after` with a wheel for the image, trying each later minor release's newest
    patch from the oldest up (a few dry runs, only when a build is about to fail)."""
    from packaging.version import InvalidVersion, Version
    result = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"],
                            capture_output=True, text=True)
    listed = re.search(r"Available versions: (.*)", result.stdout)
    try:
        start = Version(after)
        versions = sorted(Version(v) for v in (listed.group(1).split(", ") if listed else []))
    except InvalidVersion:
        return None
    newest_per_minor: dict[tuple[int, int], Version] = {}
    for version in versions:
        if version > start and not version.is_prerelease:
            newest_per_minor[(version.major, version.minor)] = version
    for minor in sorted(newest_per_minor):
        if has_wheel(name, str(newest_per_minor[minor]), platform):
            return str(newest_per_minor[minor])
    return None


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
        data = archive.read(pyproject) if isinstance(archive, zipfile.ZipFile) else member_bytes(archive, pyproject)
    return tomllib.loads(data.decode("utf-8")).get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES)


def fetch(block: str, folder: Path, platform: Platform = AMD64, from_source: bool = True) -> None:
    """One requirement: its wheel for `platform`, else (`from_source`: the engine's own platform, whose builder
    can compile) its sdist and build backend (as wheels for the image)."""
    name = re.split(r"[=<>!~ ;\\]", block, maxsplit=1)[0]
    runtime = platform.runtime()
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as single:
        single.write(block + "\n")
        single.flush()
        wheel = _pip("--no-deps", "--only-binary=:all:", *target(platform), "--require-hashes", "-d", str(folder),
                     "-r", single.name)
        if wheel.returncode == 0:
            return
        if not from_source:
            raise BuildError(f"{name} publishes no wheel for {runtime} (the image's runtime on {platform.name}), and "
                             f"another platform than the engine's own is assembled from wheels only: build "
                             f"{platform.name} on an engine of that platform, or leave it out")
        if normalize(name) in WHEEL_ONLY:
            version = re.search(r"==([^\s;\\]+)", block)
            raise BuildError(f"{name} {version.group(1) if version else ''} publishes no wheel for {runtime} (the "
                             f"image's runtime on {platform.name}), and it is not built from source here: train and "
                             f"save the model with a {name} release that has one, or leave {platform.name} out")
        before = set(folder.iterdir())
        sdist = _pip("--no-deps", "--no-binary=:all:", "--require-hashes", "-d", str(folder), "-r", single.name)
        if sdist.returncode != 0:
            raise BuildError(f"{name}: no wheel for {runtime} on {platform.name} ({_error(wheel)}), and no sdist "
                             f"either ({_error(sdist)})")
    archive = next(path for path in set(folder.iterdir()) - before)
    requires = build_requires(archive)
    say(f"{name} has no wheel for {runtime}: the builder will build {archive.name} (build backend: "
        f"{', '.join(requires)})")
    backend = _pip("--only-binary=:all:", *target(platform), "-d", str(folder), *requires)
    if backend.returncode != 0:
        raise BuildError(f"{name}: cannot fetch its build requirements {requires}: {_error(backend)}")


def wheelhouse(requirements: Path, platform: Platform = AMD64, cache: Path = CACHE, from_source: bool = True) -> Path:
    """Fill (once per requirements.txt and platform) a cache folder with what the builder installs; returns it.
    Without `from_source` (another platform than the engine's), every requirement must have a wheel.
    The folder is filled under another name and renamed when complete, so builds running at once on one machine
    never read each other's half-downloaded files: each downloads, the first to finish is kept."""
    tags = " ".join(platform.wheel_tags())
    key = hashlib.sha256(requirements.read_bytes() + tags.encode()).hexdigest()[:12]
    folder = cache / key
    if (folder / COMPLETE).exists():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    partial.chmod(0o755)  # as a folder made by mkdir: the builder's copy of it keeps its mode
    try:
        say(f"downloading wheels for cp{PYTHON_VERSION.replace('.', '')} {platform.wheel_tags()[0]}")
        # One pip for all (2.0 s here for the default's 17 requirements, against 9.4 s for one pip each); one each,
        # with sdists and clear errors, only when a requirement has no wheel.
        every_wheel = _pip("--no-deps", "--only-binary=:all:", *target(platform), "--require-hashes", "-d",
                           str(partial), "-r", str(requirements))
        if every_wheel.returncode != 0:
            for block in blocks(requirements):
                fetch(block, partial, platform, from_source)
        (partial / COMPLETE).write_text("ok\n")
        if folder.exists() and not (folder / COMPLETE).exists():
            shutil.rmtree(folder)  # left by a build that was interrupted
        try:
            partial.rename(folder)
        except OSError:  # another build completed it first
            if not (folder / COMPLETE).exists():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
