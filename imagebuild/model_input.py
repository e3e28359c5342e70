"""What `--model`, `--sample`, `--code` and `--trust` name, checked on the host before anything is built.

`--model` is a fitted model file (.joblib, .pkl, .pickle, .skops) or a bundle folder: with card.json, that card is
used as written (checked here against the schema, every problem at once); without, the one model file in it.
`--code DIR` is a folder of the user's modules put on the image's import path (a package folder, one with
__init__.py, is put there as itself). Without `--model` the build serves the default bundle, models/diabetes.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from modelcard.card import CARD_FILE, FORMATS, CardError, model_files, read_card, untrusted_problem

from . import ROOT, BuildError

DEFAULT_BUNDLE = ROOT / "models" / "diabetes"
SAMPLE_ROWS = 100_000  # rows of --sample sent to the builder (the card derivation reads no more)
SKIPPED = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class ModelSource:
    """A model file, and what comes with it."""

    artifact: Path
    card: Path | None = None  # a hand-written card.json, used as written
    sample: Path | None = None
    code: tuple[Path, ...] = ()
    trust: tuple[str, ...] = ()
    modules: dict[str, Path] = field(default_factory=dict)  # top-level module of the user's code -> its path

    @property
    def dataframe_card(self) -> bool:
        """A hand-written card that asks for DataFrame input."""
        return self.card is not None and json.loads(self.card.read_text(encoding="utf-8")).get("input") == "dataframe"


def _hand_card(folder: Path) -> tuple[Path, Path]:
    """The bundle folder's card, checked, and the model file it names."""
    try:
        card = read_card(folder)
    except CardError as exc:
        raise BuildError(str(exc)) from None
    artifact = folder / card["artifact"]["file"]
    if not artifact.is_file():
        raise BuildError(f"{artifact} not found (named by {folder / CARD_FILE})")
    return folder / CARD_FILE, artifact


def top_level_modules(code: Path) -> dict[str, Path]:
    """The importable top-level modules a --code folder provides (a package folder provides itself)."""
    if (code / "__init__.py").is_file():
        return {code.name: code}
    found = {}
    for path in sorted(code.iterdir()):
        if path.name in SKIPPED or path.name.startswith("."):
            continue
        if path.is_file() and path.suffix == ".py":
            found[path.stem] = path
        elif path.is_dir() and any(path.rglob("*.py")):
            found[path.name] = path
    return found


def model_source(model: Path | None, sample: Path | None = None, code: list[Path] | None = None,
                 trust: list[str] | None = None) -> ModelSource:
    """Check the arguments; BuildError names the first thing that is wrong (every problem of a card)."""
    if model is None:
        default_card, artifact = _hand_card(DEFAULT_BUNDLE)
        return ModelSource(artifact, default_card)
    if not model.exists():
        raise BuildError(f"--model {model}: no such file or folder")
    card: Path | None = None
    if model.is_dir() and (model / "card.json").is_file():
        if sample is not None:
            raise BuildError(f"--model {model} has its own card.json, which is used as written: --sample only "
                             f"applies when the card is derived (give the model file instead of the folder)")
        card, artifact = _hand_card(model)
    elif model.is_dir():
        found = model_files(model)
        if len(found) != 1:
            raise BuildError(f"--model {model}: expected one model file ({', '.join(sorted(FORMATS))}) or a "
                             f"card.json, found {len(found)} model files")
        artifact = found[0]
    else:
        artifact = model
    if artifact.suffix.lower() not in FORMATS:
        raise BuildError(f"--model {artifact}: unknown model file type {artifact.suffix or '(none)'}; expected "
                         f"{', '.join(sorted(FORMATS))} (joblib.dump, pickle.dump or skops.io.dump)")
    if sample is not None and not sample.is_file():
        raise BuildError(f"--sample {sample}: no such file (give rows of the training data as CSV with a header)")
    modules: dict[str, Path] = {}
    for folder in code or []:
        if not folder.is_dir():
            raise BuildError(f"--code {folder}: no such folder (give the folder holding your modules)")
        for name, path in top_level_modules(folder).items():
            if name in modules:
                raise BuildError(f"--code: module '{name}' is in both {modules[name]} and {path}")
            modules[name] = path
    return ModelSource(artifact.resolve(), card, sample.resolve() if sample else None,
                       tuple(folder.resolve() for folder in code or []), tuple(trust or ()), modules)


# skops reads the file's schema to list its types; nothing in the file is loaded or run.
UNTRUSTED = "import json, sys, skops.io; print(json.dumps(sorted(skops.io.get_untrusted_types(file=sys.argv[1]))))"


def check_trust(source: ModelSource, pythons: list[str]) -> None:
    """A derived skops model's types skops does not trust by default must all be in --trust: checked before
    anything is downloaded or built, with the first of `pythons` that has skops (the builder checks again with
    the image's skops, which decides)."""
    if source.card is not None or FORMATS.get(source.artifact.suffix.lower()) != "skops":
        return
    for python in dict.fromkeys(pythons):
        try:
            result = subprocess.run([python, "-c", UNTRUSTED, str(source.artifact)], capture_output=True, text=True,
                                    timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            problem = untrusted_problem(source.artifact.name, json.loads(result.stdout), source.trust)
            if problem:
                raise BuildError(problem)
            return


def head_of_sample(sample: Path, rows: int = SAMPLE_ROWS) -> bytes:
    """The header and the first `rows` rows of the CSV (quoted newlines kept)."""
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    with sample.open(newline="", encoding="utf-8-sig") as handle:
        for index, row in enumerate(csv.reader(handle)):
            if index > rows:
                break
            writer.writerow(row)
    return output.getvalue().encode("utf-8")


def _kept(path: Path) -> bool:
    return not any(part in SKIPPED or part.startswith(".") for part in path.parts) and path.suffix != ".pyc"


def code_files(source: ModelSource) -> list[tuple[Path, str]]:
    """(file, path under code/) for the user's modules: what goes to /app/code, caches and VCS folders left out."""
    files = []
    for name, path in source.modules.items():
        if path.is_file():
            files.append((path, path.name))
            continue
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(path)
            if file.is_file() and _kept(relative):
                files.append((file, f"{name}/{relative.as_posix()}"))
    return files
