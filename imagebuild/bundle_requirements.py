"""The packages a model needs, beside the service's own: read from the model file's opcodes (imagebuild/scan.py)
and from the imports of the user's code (pipreqs), mapped to distributions by the environment the model was
trained in (importlib.metadata, which knows that `imblearn` is imbalanced-learn), else by pipreqs' mapping, and
pinned to that environment's versions. The model's own scikit-learn version decides the image's.

When every need is already pinned, at the same version, by the repository's requirements.txt, the build uses that
file; otherwise a requirements file for this build is compiled (pip-compile --generate-hashes, the repository's
pins kept where they fit) and cached under .cache/requirements/.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from . import ROOT, BuildError, requirements
from .environment import Environment, environment
from .model_input import ModelSource, model_source
from .progress import say
from .requirements import IMPORT_OVERRIDES, compile_requirements, listed_packages, normalize, pinned
from .scan import Scan, scan_model
from .platforms import AMD64, Platform
from .wheels import has_wheel, require_wheel

CACHE = ROOT / ".cache" / "requirements"
# The same library built without CUDA, published by its project at the same versions: stock xgboost (2.1 on)
# depends on nvidia-nccl-cu12 (469 MB) and ships a 237 MB libxgboost.so with GPU code a CPU service never loads;
# xgboost-cpu's wheel is 5.6 MB (xgboost 3.2.0, measured).
CPU_BUILDS = {"xgboost": "xgboost-cpu"}
STDLIB = set(sys.stdlib_module_names) | {"__builtin__", "copy_reg"}  # the last two: Python 2 names in old pickles


@dataclass(frozen=True)
class Needs:
    """Distribution -> version (None: the newest that fits), and what the reader should know."""

    pins: dict[str, str | None]
    notes: tuple[str, ...] = ()


def pipreqs_mapping() -> dict[str, str]:
    """pipreqs' own import-name -> package mapping, and this project's overrides."""
    from pipreqs import pipreqs
    with open(pipreqs.join("mapping"), encoding="utf-8") as handle:
        mapping = dict(line.strip().split(":", 1) for line in handle if ":" in line)
    return {**mapping, **IMPORT_OVERRIDES}


def code_imports(source: ModelSource) -> dict[str, str]:
    """Third-party top-level imports of the user's code -> the folder importing it."""
    from pipreqs import pipreqs
    found: dict[str, str] = {}
    for folder in source.code:
        try:
            imports = pipreqs.get_all_imports(str(folder), encoding="utf-8")
        except (SyntaxError, UnicodeDecodeError) as exc:
            raise BuildError(f"--code {folder}: cannot read its imports ({type(exc).__name__}: {exc})") from None
        for name in imports:
            if name not in source.modules and name not in STDLIB:
                found.setdefault(name, f"imported by the code in {folder.name}")
    return found


def _check_local(module: str, name: str, source: ModelSource) -> None:
    """The user's module the model names must exist in --code."""
    top, *rest = module.split(".")
    path = source.modules[top]
    if rest and path.is_dir():
        target = path.joinpath(*rest)
        if not (target.with_suffix(".py").is_file() or (target / "__init__.py").is_file() or target.is_dir()):
            raise BuildError(f"the model references {module}.{name}, but --code has no {module.replace('.', '/')}.py")


def _enclosing(top: str, scan: Scan) -> str | None:
    """The one package the model names `top` inside of: a compiled module that registers itself under a short
    name (scikit-learn 1.5-1.7 pickle their Cython losses as `_loss.CyHalfSquaredError`, the module being
    sklearn/_loss/_loss) belongs to that package's distribution."""
    parents = {module.split(".")[0] for module, _ in scan.globals if top in module.split(".")[1:]}
    return parents.pop() if len(parents) == 1 else None


def model_needs(scan: Scan, source: ModelSource, env: Environment, versions: bool = True) -> Needs:
    """Distributions the model and the user's code need; versions from `env` when `versions` is true."""
    needed: dict[str, str] = {}  # top-level module -> why it is needed
    for module, name in sorted(scan.globals):
        top = module.split(".")[0]
        if top == "__main__":
            raise BuildError(f"the model references {name}, defined in the training script (__main__): move it "
                             f"into a module of your own, retrain, and give that module's folder with --code")
        if top in STDLIB:
            continue
        if top in source.modules:
            _check_local(module, name, source)
            continue
        needed.setdefault(top, f"the model references {module}.{name}")
    for top, why in code_imports(source).items():
        needed.setdefault(top, why)

    # A module named as a distribution the service already pins is that distribution: so the default bundle
    # (joblib, numpy, scikit-learn) needs nothing installed on the build machine beyond requirements-build.txt.
    mapping = {**{name: name for name in pinned(ROOT / "requirements.txt")}, **pipreqs_mapping()}
    pins, notes = {}, []
    unknown = [top for top in needed if not env.distributions_of(top) and top not in mapping]
    owners = env.owners(sorted(scan.modules - set(unknown)), unknown) if unknown else {}
    def known(module: str) -> list[str]:
        return env.distributions_of(module) or ([normalize(mapping[module])] if module in mapping else [])

    for top, why in sorted(needed.items()):
        distributions = known(top) or owners.get(top, [])
        parent = None if distributions else _enclosing(top, scan)
        if parent:
            distributions = known(parent)
        if not distributions:
            raise BuildError(f"module '{top}' ({why}) is provided by no distribution installed in {env.python}, "
                             f"and pipreqs' mapping does not know it: build with --python pointing at the Python "
                             f"the model was trained with, or give your own code with --code")
        for distribution in distributions:
            pins[distribution] = env.version_of(distribution) if versions else None
    if scan.dataframe or source.dataframe_card:
        pins.setdefault("pandas", env.version_of("pandas") if versions else None)
    if scan.format == "skops":
        pins.setdefault("skops", env.version_of("skops") if versions else None)
    if scan.sklearn_version:
        trained = pins.get("scikit-learn")
        if trained and trained != scan.sklearn_version:
            notes.append(f"{env.python} has scikit-learn {trained}, the model was saved with "
                         f"{scan.sklearn_version}: the image gets {scan.sklearn_version}")
        pins["scikit-learn"] = scan.sklearn_version
    if versions:
        notes += [f"{name} is not installed in {env.python}: the image gets the newest version that fits"
                  for name, version in sorted(pins.items()) if version is None]
    pins, cpu_notes = cpu_builds(pins)
    return Needs(pins, tuple(notes + cpu_notes))


def cpu_builds(pins: dict[str, str | None]) -> tuple[dict[str, str | None], list[str]]:
    """The pins with each distribution of CPU_BUILDS replaced by its CPU-only build of the same version, where
    that version publishes a wheel for the image; and a note for each."""
    chosen, notes = dict(pins), []
    for name, cpu in CPU_BUILDS.items():
        if name not in chosen:
            continue
        version = chosen[name]
        if version is not None and not has_wheel(cpu, version):
            notes.append(f"{name} {version} has no CPU-only build ({cpu}) for the image: the image gets {name} "
                         f"with its GPU libraries")
            continue
        del chosen[name]
        chosen[cpu] = version
        notes.append(f"{name}{' ' + version if version else ''}: the image gets {cpu}, the same library without "
                     f"the GPU code and CUDA libraries a CPU service never loads")
    return chosen, notes


def requirements_file(needs: Needs, root: Path = ROOT, cache: Path = CACHE) -> Path:
    """The hash-pinned requirements for an image serving a model with these needs."""
    repository = root / "requirements.txt"
    pins = pinned(repository)
    if all(name in pins and version in (None, pins[name]) for name, version in needs.pins.items()):
        return repository
    lines = [name for name in listed_packages(root / "requirements.in") if name not in needs.pins]
    lines += [f"{name}=={version}" if version else name for name, version in sorted(needs.pins.items())]
    text = "".join(f"{line}\n" for line in sorted(lines))
    key = hashlib.sha256((text + repository.read_text(encoding="utf-8")).encode()).hexdigest()[:12]
    folder = cache / key
    target = folder / "requirements.txt"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.in").write_text(text, encoding="utf-8")
    partial = folder / "requirements.txt.partial"
    partial.write_text(repository.read_text(encoding="utf-8"), encoding="utf-8")  # the repository's pins first
    compile_requirements(folder / "requirements.in", partial)
    partial.rename(target)
    return target


def grpc_pins() -> dict[str, str | None]:
    """What `--grpc` adds: the packages pinned in service/grpc_v2/requirements.in."""
    lines = (ROOT / "service" / "grpc_v2" / "requirements.in").read_text(encoding="utf-8").splitlines()
    return {normalize(name): version for name, _, version in (line.strip().partition("==") for line in lines)
            if name and not name.startswith("#")}


def for_build(source: ModelSource, python: str | None, given: bool, update: bool, grpc: bool = False,
              platforms: tuple[Platform, ...] = (AMD64,)) -> Path:
    """The requirements file of a build for `platforms`: the repository's files checked (rewritten first with
    `update`), then the model's needs (with the training environment's versions when the model was `given`) and,
    with `grpc`, the gRPC server's packages laid on top."""
    env = environment(python)
    default = model_source(None)
    default_needs = model_needs(scan_model(default.artifact), default, env, versions=False)
    if update:
        say("regenerating requirements.in (pipreqs, the default bundle) and requirements.txt (pip-compile)")
        requirements.update(also=sorted(default_needs.pins))
    requirements.check(also=sorted(default_needs.pins))
    needs = model_needs(scan_model(source.artifact), source, env, versions=given)
    if grpc:
        needs = Needs({**needs.pins, **grpc_pins()}, needs.notes)
    for note in needs.notes:
        say(f"requirements: {note}")
    sklearn_version = needs.pins.get("scikit-learn")
    if sklearn_version and sklearn_version != pinned(ROOT / "requirements.txt").get("scikit-learn"):
        require_wheel("scikit-learn", sklearn_version, "the version the model was saved with", platforms)
    path = requirements_file(needs)
    listed = ", ".join(f"{name}=={version}" if version else name for name, version in sorted(needs.pins.items()))
    say(f"requirements: {path.relative_to(ROOT)} ({listed})")
    return path
