"""`python scripts/build.py`: requirements check, bases, wheels, builder, runtime, report, size gate, and with
--push REGISTRY/REPOSITORY, publication verified by pulling the image back by digest.

stdout carries the result (the report; with --push only `REPOSITORY@sha256:...`); progress goes to stderr. Exit 0 on success, 1 on a build error
(one line with a hint), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from . import ROOT, BuildError
from .progress import say

REPOSITORY = "sklearn-model-service"
OFFICIAL_RUNTIME = ("gcr.io/distroless/python3-debian13", "nonroot")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/build.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", help=f"image reference (default {REPOSITORY}:<service version>)")
    parser.add_argument("--offline", action="store_true",
                        help="do not try the official distroless base: assemble it from Debian packages")
    parser.add_argument("--update-requirements", action="store_true",
                        help="rewrite requirements.in from service/'s imports and recompile requirements.txt")
    parser.add_argument("--update-lock", action="store_true",
                        help="re-resolve the Debian packages and rewrite build/debian.lock.json")
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument("--push", metavar="REGISTRY/REPOSITORY",
                        help="push as REPOSITORY:<version> and :<git short sha>, pull back by digest, run, predict")
    parser.add_argument("--latest", action="store_true", help="with --push, also tag and push :latest")
    return parser.parse_args(argv)


def service_version() -> str:
    namespace: dict[str, Any] = {}
    exec((ROOT / "service" / "__init__.py").read_text(encoding="utf-8"), namespace)
    return namespace["__version__"]


def docker_client() -> Any:
    import docker
    import docker.errors
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise BuildError(f"no Docker engine answers ({exc.__class__.__name__}); start one, "
                         f"e.g. `bash scripts/bootstrap.sh`") from None
    return client


def runtime_base(client: Any, offline: bool, update_lock: bool, lock: dict[str, Any]) -> str:
    """The official distroless base when it can be pulled, else the equivalent from Debian packages."""
    from . import debian
    import docker.errors
    if not offline:
        repository, tag = OFFICIAL_RUNTIME
        try:
            client.images.pull(repository, tag=tag)
            return f"{repository}:{tag}"
        except docker.errors.APIError as exc:
            say(f"cannot pull {repository}:{tag} ({str(exc.explanation or exc)[:80]}); using Debian packages")
    return debian.runtime_base(client, update_lock, lock)


def build(args: argparse.Namespace) -> dict[str, Any]:
    from . import debian, docker_build, gate, report, requirements, wheels
    if args.update_requirements:
        say("regenerating requirements.in (pipreqs) and requirements.txt (pip-compile --generate-hashes)")
        requirements.update()
    requirements.check()
    client = docker_client()
    lock = debian.read_lock()
    before = json.dumps(lock, sort_keys=True)
    builder_base = debian.builder_base(client, args.update_lock, lock)
    runtime = runtime_base(client, args.offline, args.update_lock, lock)
    if json.dumps(lock, sort_keys=True) != before:  # the content, not the key order, decides
        debian.write_lock(lock)
        say(f"wrote {debian.LOCK.relative_to(ROOT)}")
    debian.remove_superseded(client, {builder_base, runtime})
    wheelhouse = wheels.wheelhouse(ROOT / "requirements.txt")

    version = service_version()
    reference = args.tag or f"{REPOSITORY}:{version}"
    builder_tag = f"{REPOSITORY}-builder:{version}"
    context = docker_build.context(wheelhouse)
    say(f"building {builder_tag} on {builder_base}")
    docker_build.build(client, context, "Dockerfile.builder", builder_tag, {"BUILDER_BASE": builder_base})
    say(f"building {reference} on {runtime}")
    docker_build.build(client, context, "Dockerfile.runtime", reference, {
        "BUILDER_IMAGE": builder_tag, "RUNTIME_BASE": runtime, "VERSION": version,
        "REVISION": docker_build.revision(), "CREATED": docker_build.created()})
    reclaimed = sum(client.images.prune(filters={"dangling": True, "label": label}).get("SpaceReclaimed") or 0
                    for label in docker_build.SUPERSEDED_LABELS)
    if reclaimed:
        say(f"pruned superseded builds of this project ({reclaimed / 1e6:.0f} MB)")
    say("measuring layers (docker save, gzip)")
    result = report.analyze(client, reference)
    result["bases"] = {"builder": builder_base, "runtime": runtime}
    result["budget"] = {"limit": gate.budget()}
    if args.report:
        report.write_json(result, args.report)
    print(report.render(result), file=sys.stderr if args.push else sys.stdout)
    gate.check(result, result["budget"]["limit"])
    if args.push:
        from .publish import publish, tags_for
        tags = tags_for(version, docker_build.revision(), args.latest)
        print(publish(client, reference, args.push, tags))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.latest and not args.push:
        print("error: --latest only applies with --push", file=sys.stderr)
        return 2
    if args.push:
        from .publish import check_repository
        try:
            check_repository(args.push)
        except BuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        build(args)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception:  # the unexpected keeps its traceback
        traceback.print_exc()
        return 1
    return 0
