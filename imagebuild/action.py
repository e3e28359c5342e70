"""The composite action's build step (action.yml): its inputs, read from INPUT_* variables (the action maps each
input to one, so no input is ever pasted into a shell line), become `scripts/build.py`'s arguments; the build's
report becomes the step's outputs (GITHUB_OUTPUT) and its size diff, with `compare`, the job summary's.

Paths are the user's repository's (GITHUB_WORKSPACE), the project is the action's own checkout, at the action's
ref. An input the build cannot take is one line and exit code 2, as with the build's own arguments.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from collections.abc import Mapping

from . import cli, platforms

FLAGS = {"sample": "--sample", "tag": "--tag", "size-budget": "--size-budget", "compare": "--compare",
         "max-growth": "--max-growth", "python": "--python", "push": "--push"}
PATHS = {"model", "sample", "compare", "code"}  # inputs naming files of the user's repository


def _input(environ: Mapping[str, str], name: str) -> str:
    return environ.get(f"INPUT_{name.upper().replace('-', '_')}", "").strip()


def arguments(environ: Mapping[str, str]) -> list[str]:
    """scripts/build.py's arguments for the action's inputs; ValueError with one line for one it cannot take."""
    workspace = Path(environ.get("GITHUB_WORKSPACE", "."))

    def path(value: str) -> str:
        return str((workspace / value).resolve())

    model = _input(environ, "model")
    if not model:
        raise ValueError("input 'model' is required: the model file (or bundle folder) in your repository")
    argv = ["--model", path(model)]
    if _input(environ, "platforms"):
        try:
            chosen = platforms.parse(_input(environ, "platforms"))
        except ValueError as exc:
            raise ValueError(f"input 'platforms': {exc}") from None
        argv += ["--platform", ",".join(platform.name for platform in chosen)]
    for name, flag in FLAGS.items():
        value = _input(environ, name)
        if value:
            argv += [flag, path(value) if name in PATHS else value]
    for folder in _input(environ, "code").replace(",", "\n").splitlines():
        if folder.strip():
            argv += ["--code", path(folder.strip())]
    if _input(environ, "grpc") == "true":
        argv.append("--grpc")
    return argv


def _write_outputs(environ: Mapping[str, str], values: dict[str, str]) -> None:
    target = environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in values.items())


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        argv = arguments(environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Path(environ.get("RUNNER_TEMP", ".")) / "sklearn-model-service" / "report.json"
    argv += ["--report", str(report)]  # with `compare`, the build appends the diff to $GITHUB_STEP_SUMMARY itself
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the build's result: the report, or with --push the pinned reference
        code = cli.main(argv)
    sys.stderr.write(printed.getvalue())
    if code != 0:
        return code
    result = json.loads(report.read_text(encoding="utf-8"))
    lines = printed.getvalue().strip().splitlines()
    pinned = lines[-1] if _input(environ, "push") and lines else ""
    _write_outputs(environ, {"image": result["image"], "id": result["id"], "digest": pinned.partition("@")[2],
                             "pinned": pinned, "size": str(result["size"]),
                             "compressed-size": str(result["compressed_size"]), "report": str(report)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
