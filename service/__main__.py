"""`python -m service`: load and verify the model bundle, then serve it on waitress (see service/workers.py)."""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__, logs
from .config import ConfigError, describe, settings_from_env
from .workers import START_ERROR, run


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a scikit-learn model bundle over HTTP (predict, examples, metadata, health, V2).\n"
                    "Every setting is an environment variable:",
        epilog=describe() + "\n\nA start-up failure prints one line per problem and exits with code 2.")
    parser.add_argument("--version", action="version", version=f"sklearn-model-service {__version__}")
    parser.add_argument("command", nargs="?", choices=["serve", "predict"],
                        help="serve: as Amazon SageMaker starts a model container (`docker run IMAGE serve`): "
                             "SERVICE_PLATFORM=sagemaker unless set; predict: score a file offline (`predict "
                             "--help`)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["predict"]:  # score a file offline (service/batch.py)
        from .batch import main as predict
        return predict(arguments[1:])
    args = parse(argv)
    if args.command == "serve":
        os.environ.setdefault("SERVICE_PLATFORM", "sagemaker")  # the workers read their settings from it too
    try:
        settings = settings_from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return START_ERROR
    logs.configure(settings["LOG_LEVEL"].upper())
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
