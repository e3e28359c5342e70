"""`python scripts/build.py [--model MODEL [--sample CSV] [--code DIR]]`: an image serving your model (default:
models/diabetes). Requirements from service/'s imports, the model file's opcodes and your code's imports; bases,
wheels, builder; the card derived in the builder by the model's own libraries; runtime, report, size gate; and
with --push REGISTRY/REPOSITORY, publication verified by pulling the image back by digest.

stdout carries the result (the report; with --push only `REPOSITORY@sha256:...`); progress goes to stderr. Exit 0
on success, 1 on a build error (one line per problem, with a hint), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ROOT, BuildError, platforms, write_atomic
from .platforms import Platform
from .progress import say

if TYPE_CHECKING:
    from .model_input import ModelSource
    from .registry import Pushed
    from .reproducible import Epoch

REPOSITORY = "sklearn-model-service"
PINNED_BASE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
SOURCE_URL = "https://github.com/sklearn-model-service/sklearn-model-service"


@dataclass(frozen=True)
class Options:
    """The command line, typed: parse() makes it from argv, and every step reads it."""

    model: Path | None = None
    sample: Path | None = None
    code: list[Path] = field(default_factory=list)
    trust: list[str] = field(default_factory=list)
    python: str | None = None
    tag: str | None = None
    size_budget: float | None = None
    compare: Path | None = None
    max_growth: float | None = None
    summary: Path | None = None
    bundle_out: Path | None = None
    prune: bool = False
    grpc: bool = False
    platform: str | None = None
    base: str | None = None
    update_requirements: bool = False
    update_lock: bool = False
    report: Path | None = None
    clean: bool = False
    debug: bool = False
    push: str | None = None
    latest: bool = False
    manifests: Path | None = None


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="scripts/build.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, metavar="MODEL",
                        help="a fitted model file (.joblib, .pkl, .pickle, .skops) or a bundle folder (card.json "
                             "and the model file); default: models/diabetes")
    parser.add_argument("--sample", type=Path, metavar="CSV",
                        help="rows of the training data (CSV with a header): feature types, ranges, missing "
                             "values and real example rows for the derived card")
    parser.add_argument("--code", type=Path, action="append", default=[], metavar="DIR",
                        help="a folder of your own modules the model imports (repeatable); copied into the image")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help="skops: a type to trust beyond skops' defaults (module.Class; repeatable)")
    parser.add_argument("--python", metavar="PYTHON",
                        help="the Python the model was trained with: maps its modules to packages and gives their "
                             "versions (default: the one running this build)")
    parser.add_argument("--tag", help=f"image reference (default {REPOSITORY}:<service version>, with --grpc "
                                      f"<service version>-grpc)")
    parser.add_argument("--size-budget", type=float, metavar="MB",
                        help="size budget of this build, in MB (default: build/size-budget.json)")
    parser.add_argument("--compare", type=Path, metavar="REPORT",
                        help="print what changed against an earlier build's report (sizes, layers, packages); "
                             "also `sms-report diff A.json B.json`")
    parser.add_argument("--max-growth", type=float, metavar="MB",
                        help="with --compare: fail when the image grew by more than MB")
    parser.add_argument("--summary", type=Path, metavar="FILE",
                        help="with --compare: append the diff as markdown to FILE (default: $GITHUB_STEP_SUMMARY "
                             "when set)")
    parser.add_argument("--bundle-out", type=Path, metavar="DIR",
                        help="also write the served bundle (card.json and the model file) to DIR")
    parser.add_argument("--prune", action="store_true",
                        help="keep only the modules and files the service uses for this model, found by running it "
                             "under a trace in the builder (smaller; a code path the trace never took may then miss "
                             "a module)")
    parser.add_argument("--grpc", action="store_true",
                        help="also serve the Open Inference Protocol over gRPC on port 8081 (SERVICE_GRPC_PORT), as "
                             "KServe and tritonclient call it; adds grpcio and protobuf (about 20 MB)")
    parser.add_argument("--platform", metavar="LIST",
                        help=f"the platforms to build for, comma-separated: {', '.join(platforms.PLATFORMS)} "
                             f"(default: the Docker engine's own); with --push, one image index of them all")
    parser.add_argument("--base", metavar="REF@sha256:DIGEST",
                        help="the runtime base image, by digest (default: the distroless-style base assembled from "
                             "build/debian.lock.json's Debian packages); it must run /usr/bin/python3.13 as "
                             "Debian 13's, like gcr.io's distroless python3-debian13:nonroot")
    parser.add_argument("--update-requirements", action="store_true",
                        help="rewrite requirements.in from service/'s imports and recompile requirements.txt")
    parser.add_argument("--update-lock", action="store_true",
                        help="re-resolve the Debian packages and rewrite build/debian.lock.json")
    parser.add_argument("--report", type=Path, metavar="FILE",
                        help="write the report as JSON to FILE, and the SBOM and provenance beside it (FILE's stem + "
                             ".cdx.json, .provenance.json); default: dist/<image>.report.json and so on")
    parser.add_argument("--clean", action="store_true",
                        help="remove this build's builder image (REPOSITORY-builder:TAG, about 0.9 GB) and build "
                             "cache (REPOSITORY-cache:TAG and :TAG-app) afterwards, kept otherwise so that the next "
                             "build of this tag reuses their layers")
    parser.add_argument("--debug", action="store_true",
                        help="also build a debug twin, <tag>-debug, with a busybox shell at /busybox (pushed only "
                             "with --push)")
    parser.add_argument("--push", metavar="REGISTRY/REPOSITORY",
                        help="push as REPOSITORY:<version> and :<git short sha>, pull back by digest, run, predict")
    parser.add_argument("--latest", action="store_true", help="with --push, also tag and push :latest")
    parser.add_argument("--manifests", type=Path, metavar="DIR",
                        help="with --push, write deploy/'s Kubernetes and KServe manifests to DIR with the pushed "
                             "image's digest in place")
    return Options(**vars(parser.parse_args(argv)))


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


def choose_runtime_base(client: Any, base: str | None, update_lock: bool, locked: dict[str, Any],
                        platform: Platform) -> tuple[str, dict[str, Any]]:
    """The runtime base and the lock's runtime section: the base assembled from the lock, unless `base` names
    another by digest (then pulled if the engine lacks it; the lock's section is kept as it is). Never a base
    chosen by what the network allows: what ships is what was measured and tested."""
    from . import bases
    import docker.errors
    if base is None:
        return bases.runtime_base(client, update_lock, locked, platform)
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        say(f"pulling the runtime base {base}")
        try:
            client.images.pull(base, platform=platform.name)
        except docker.errors.APIError as exc:
            raise BuildError(f"--base {base}: cannot pull it ({str(exc.explanation or exc)[:120]}); pull or load "
                             f"it into the engine first") from None
    return base, locked


def base_images(client: Any, options: Options, platform: Platform) -> tuple[str, str]:
    """The builder and runtime bases of one platform; the lock file is rewritten only when its content changes."""
    from . import bases, debian_lock
    lock = debian_lock.read_lock()
    locked = debian_lock.sections(lock, platform)
    builder, builder_section = bases.builder_base(client, options.update_lock, locked.get("builder", {}), platform)
    runtime, runtime_section = choose_runtime_base(client, options.base, options.update_lock, locked.get("runtime", {}),
                                                   platform)
    updated = debian_lock.with_sections(lock, platform, builder=builder_section, runtime=runtime_section)
    bases.check_same_python(*(sections[kind] for sections in updated.values() for kind in ("builder", "runtime")
                              if kind in sections))
    if updated != lock:
        debian_lock.write_lock(updated)
        say(f"wrote {debian_lock.LOCK.relative_to(ROOT)}")
    return builder, runtime


def record_paths(report: Path | None, reference: str, suffix: str = "") -> dict[str, Path]:
    """Where the report, the SBOM and the provenance go: beside --report FILE (FILE, FILE's stem + .cdx.json and
    .provenance.json), else dist/<reference>.report.json, .cdx.json and .provenance.json. `suffix` (-arm64)
    follows FILE's stem for the images of a multi-platform build but the first."""
    if report is not None:
        stem = report.with_suffix("") if report.suffix == ".json" else report
        stem = stem.with_name(stem.name + suffix)
        return {"report": stem.with_name(stem.name + ".json") if suffix or report.suffix == ".json" else report,
                "sbom": stem.with_name(stem.name + ".cdx.json"),
                "provenance": stem.with_name(stem.name + ".provenance.json")}
    stem = ROOT / "dist" / re.sub(r"[^A-Za-z0-9._-]+", "-", reference)
    return {kind: stem.with_name(f"{stem.name}.{extension}") for kind, extension in
            (("report", "report.json"), ("sbom", "cdx.json"), ("provenance", "provenance.json"))}


@dataclass(frozen=True)
class Target:
    """One platform's image of a build: its local tag and where its records go."""

    platform: Platform
    reference: str
    records: dict[str, Path]


def plan(chosen: list[Platform], engine: Platform, reference: str, report: Path | None) -> list[Target]:
    """The images of a build, the engine's own platform first (it keeps `reference`; the engine's single-platform
    store holds one image per tag, so the others are tagged REFERENCE-ARCH, e.g. :1.0-arm64). A build for one
    platform tags it `reference`, whichever it is."""
    from .docker_build import split_reference
    ordered = sorted(chosen, key=lambda platform: platform != engine)
    repository, tag = split_reference(reference)
    targets = []
    for index, platform in enumerate(ordered):
        suffix = f"-{platform.debian}" if index else ""
        own = f"{repository}:{tag}{suffix}"
        targets.append(Target(platform, own, record_paths(report, own, suffix)))
    return targets


def build_debug(client: Any, reference: str, labels: dict[str, str], epoch: Epoch, update_lock: bool,
                platform: Platform) -> dict[str, Any]:
    """The debug twin of `reference` (imagebuild/debug_twin.py), normalized like the image."""
    from . import debian_lock, debug_twin, docker_build, reproducible
    lock = debian_lock.read_lock()
    binary, section = debug_twin.busybox(update_lock, debian_lock.sections(lock, platform).get("debug", {}), platform)
    commands = debug_twin.applets(client, binary, platform)
    if section != debian_lock.sections(lock, platform).get("debug"):
        debian_lock.write_lock(debian_lock.with_sections(lock, platform, debug=section))
        say(f"wrote {debian_lock.LOCK.relative_to(ROOT)}")
    twin = debug_twin.reference(reference)
    as_built = docker_build.cache_reference(twin)
    say(f"building the debug twin {twin}")
    docker_build.build(client, debug_twin.context(binary, commands), debug_twin.DOCKERFILE, as_built,
                       {"IMAGE": reference}, labels, platform)
    return {"image": twin, "id": reproducible.reproduce(client, as_built, twin, reference, epoch)}


@dataclass
class Built:
    """One platform's image, built, measured and recorded (what the push and the provenance need)."""

    target: Target
    result: dict[str, Any]
    sbom: str
    images: dict[str, tuple[str, str]]  # the provenance's builder base, builder and runtime base: (reference, id)
    debug: dict[str, Any] | None


def platform_sbom(options: Options, target: Target, source: ModelSource, requirements_path: Path,
                  wheelhouse: Path, runtime: str, epoch: Epoch) -> str:
    """The SBOM of one platform's image: its wheels and (unless --base) its locked Debian packages."""
    from . import debian_lock, sbom
    # The lock describes the Debian packages of the base assembled here, not those of one given with --base.
    debian = {} if options.base else \
        debian_lock.sections(debian_lock.read_lock(), target.platform)["runtime"]["packages"]
    if options.base:
        say(f"the SBOM leaves out the Debian packages of {runtime}: its /var/lib/dpkg/status.d lists them")
    return sbom.document(target.reference, sbom.python_distributions(requirements_path, wheelhouse), debian,
                         source.artifact, epoch.seconds, runtime)


def build_native(client: Any, options: Options, target: Target, source: ModelSource,
                 requirements_path: Path, epoch: Epoch, version: str) -> Built:
    """The engine's own platform's image: bases, wheels, builder, runtime, normalization."""
    from . import docker_build, report, reproducible, wheels
    platform, reference = target.platform, target.reference
    wheelhouse = wheels.wheelhouse(requirements_path, platform)
    builder_base, runtime = base_images(client, options, platform)
    sbom_text = platform_sbom(options, target, source, requirements_path, wheelhouse, runtime, epoch)
    builder_tag = docker_build.builder_reference(reference)
    labels = {docker_build.BUILD_LABEL: reference}
    say(f"building {builder_tag} on {builder_base}")
    builder_id = docker_build.build(client, docker_build.builder_context(wheelhouse, requirements_path),
                                    "Dockerfile.builder", builder_tag, {"BUILDER_BASE": builder_base}, labels,
                                    platform)
    as_built = docker_build.cache_reference(reference)
    say(f"building {reference} on {runtime}")
    pruning = {"PRUNE": "1", "VENV_FROM": "/staging/pruned/venv", "STDLIB_FROM": "/staging/pruned/stdlib"} \
        if options.prune else {}
    context = docker_build.runtime_context(source, sbom_text)
    arguments = {"BUILDER_IMAGE": builder_tag, "RUNTIME_BASE": runtime, "VERSION": version,
                 "DERIVE_ARGS": docker_build.derive_arguments(source), "REVISION": docker_build.revision(),
                 "CREATED": epoch.iso(), "SOURCE": SOURCE_URL, "GRPC_PORT": "8081" if options.grpc else "0", **pruning}
    # The app stage first, under its own tag, so that it outlives this build's pruning: the next build of the same
    # model and code reuses it (the card's derivation, the compiling) and, with it, every later step.
    docker_build.build(client, context, "Dockerfile.runtime", docker_build.stage_reference(reference), arguments,
                       labels, platform, target="app")
    docker_build.build(client, context, "Dockerfile.runtime", as_built, arguments, labels, platform)
    say(f"normalizing {reference}: files' times at 0, the config's at {reproducible.VARIABLE}={epoch.seconds} "
        f"({epoch.iso()}, {reproducible.ORIGIN[epoch.source]})")
    reproducible.reproduce(client, as_built, reference, runtime, epoch, report.remember)
    images = {"builder base": (builder_base, client.images.get(builder_base).id), "builder": (builder_tag, builder_id),
              "runtime base": (runtime, client.images.get(runtime).id)}
    return Built(target, {"bases": {"builder": builder_base, "runtime": runtime}}, sbom_text, images, None)


def build_cross(client: Any, options: Options, target: Target, native: Built, source: ModelSource,
                requirements_path: Path, epoch: Epoch) -> Built:
    """Another platform's image, assembled from the engine's own (imagebuild/cross.py): no emulator."""
    from . import bases, cross, debian_lock, docker_build, wheels
    platform, reference = target.platform, target.reference
    wheelhouse = wheels.wheelhouse(requirements_path, platform, from_source=False)
    runtime, section = bases.runtime_base(client, options.update_lock, debian_lock.sections(
        debian_lock.read_lock(), platform).get("runtime", {}), platform)
    lock = debian_lock.read_lock()
    if section != debian_lock.sections(lock, platform).get("runtime"):
        debian_lock.write_lock(debian_lock.with_sections(lock, platform, runtime=section))
    sbom_text = platform_sbom(options, target, source, requirements_path, wheelhouse, runtime, epoch)
    builder_base = native.images["builder base"][0]
    parts = docker_build.cross_reference(reference)
    labels = {docker_build.BUILD_LABEL: reference}
    say(f"building {platform.name}'s venv {parts} on {builder_base} (no emulator: its wheels are unpacked, not run)")
    parts_id = docker_build.build(client, docker_build.cross_context(wheelhouse, requirements_path,
                                                                    cross.sysconfigdata(platform)),
                                  cross.DOCKERFILE, parts, {"BUILDER_BASE": builder_base,
                                                            **cross.build_arguments(platform)},
                                  labels, native.target.platform)
    say(f"assembling {reference} ({platform.name}) from {native.target.reference}'s layers")
    image_id = cross.assemble(client, native.target.reference, native.result["bases"]["runtime"], runtime, parts,
                              sbom_text, platform, reference)
    images = {"builder base": native.images["builder base"], "builder": (parts, parts_id),
              "runtime base": (runtime, client.images.get(runtime).id)}
    say(f"{reference} is {image_id[:19]}")
    return Built(target, {"bases": {"builder": builder_base, "runtime": runtime}}, sbom_text, images, None)


def finish(client: Any, options: Options, built: Built, plan: Plan) -> Built:
    """A platform's image built: its debug twin, the pruning of superseded builds, the report and the records."""
    from . import debian_lock, docker_build, report, served
    reference, platform = built.target.reference, built.target.platform
    labels = {docker_build.BUILD_LABEL: reference}
    debug = build_debug(client, reference, labels, plan.epoch, options.update_lock, platform) if options.debug else None
    reclaimed = docker_build.prune_superseded(client, reference)  # the debug twin's too: it carries the label
    if reclaimed:
        say(f"pruned superseded builds of {reference} ({reclaimed / 1e6:.0f} MB)")
    say(f"measuring {reference}'s layers (each measured once: .cache/layer-sizes.json)")
    result = report.analyze(client, reference)
    result["platform"] = platform.name
    result["model"] = served.summary(served.served_card(client, reference))
    if options.prune:
        result["pruned"] = served.pruned(client, reference)
    result["bases"] = {**built.result["bases"],
                       "runtime_from": "--base" if options.base else str(debian_lock.LOCK.relative_to(ROOT))}
    result["source_date_epoch"] = {"seconds": plan.epoch.seconds, "time": plan.epoch.iso(), "source": plan.epoch.source}
    result["records"] = {kind: str(path) for kind, path in built.target.records.items()}
    if debug:
        result["debug"] = debug
    result["requirements"] = str(plan.requirements.relative_to(ROOT))
    result["budget"] = plan.budgets[platform.name]
    report.write_json(result, built.target.records["report"])
    write_atomic(built.target.records["sbom"], built.sbom)
    return Built(built.target, result, built.sbom, built.images, debug)


@dataclass(frozen=True)
class Plan:
    """What a build makes, settled and checked before anything is built."""

    source: ModelSource
    engine: Platform
    targets: list[Target]  # the images asked for, the engine's own platform first
    native: Target  # the engine's own platform's image: targets[0], or the template of the others
    requirements: Path
    epoch: Epoch
    version: str
    reference: str
    budgets: dict[str, dict[str, Any]]  # by platform name: the gate's limits and where they come from
    started: float


def checked_model(options: Options) -> ModelSource:
    """The model file, sample and code, and the skops types, checked on the host: no Docker engine needed."""
    from . import model_input
    trust = [name for item in options.trust for name in item.split(",")]
    source = model_input.model_source(options.model, options.sample, options.code, trust)
    model_input.check_trust(source, [options.python or sys.executable, sys.executable])
    return source


def prepare(client: Any, options: Options, source: ModelSource, started: float) -> Plan:
    """The rest of what can be checked before building, checked on the engine: the registry and its
    credentials, the platforms, the budgets, the requirements."""
    from . import bundle_requirements, docker_build, reproducible
    if options.push:  # the registry and its credentials, before minutes of building
        from .publish import check_access
        check_access(client, options.push)
    try:
        engine = platforms.of_engine(client)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    chosen = platforms.parse(options.platform) if options.platform else [engine]
    version = service_version()
    reference = options.tag or f"{REPOSITORY}:{version}{'-grpc' if options.grpc else ''}"
    targets = plan(chosen, engine, reference, options.report)
    foreign = [target.platform.name for target in targets if target.platform != engine]
    if foreign and options.prune:
        raise BuildError(f"--prune traces the service on the engine's own platform ({engine.name}); "
                         f"{', '.join(foreign)} are assembled without running it: build them without --prune")
    if foreign and options.base:
        raise BuildError(f"--base replaces the runtime base of the engine's own platform ({engine.name}) only: build "
                         f"{', '.join(foreign)} without --base")
    budgets = {platform.name: budget_of(options, platform) for platform in chosen}
    requirements_path = bundle_requirements.for_build(source, options.python, given=options.model is not None,
                                                      update=options.update_requirements, grpc=options.grpc,
                                                      platforms=tuple(chosen))
    # The engine's own platform is built, the others are assembled from it (imagebuild/cross.py); when it is not
    # one of those asked for, it is built all the same, as REFERENCE-ARCH, and reported by no record.
    repository, tag = docker_build.split_reference(reference)
    native = targets[0] if targets[0].platform == engine else Target(engine, f"{repository}:{tag}-{engine.debian}", {})
    if foreign:
        say(f"the engine runs {engine.name}: {', '.join(foreign)} assembled from its image, with no emulator")
    return Plan(source, engine, targets, native, requirements_path,
                reproducible.source_date_epoch(docker_build.commit_time()), version, reference, budgets, started)


def budget_of(options: Options, platform: Platform) -> dict[str, Any]:
    """The size gate's limits for one platform's image, and where they come from."""
    from . import gate
    if options.size_budget:
        return {"limit": round(options.size_budget * 1e6), "source": "--size-budget"}
    try:
        return {"limit": gate.budget(grpc=options.grpc, platform=platform),
                "compressed_limit": gate.budget(grpc=options.grpc, compressed=True, platform=platform),
                "source": str(gate.BUDGET.relative_to(ROOT)) + (" with grpc_bytes" if options.grpc else "")
                + (f" with {platform.debian}_bytes" if gate.budget(platform=platform) != gate.budget() else "")}
    except (OSError, ValueError, KeyError) as exc:
        raise BuildError(f"{gate.BUDGET.relative_to(ROOT)} cannot be read ({type(exc).__name__}: {exc}); restore "
                         f"it from git or give --size-budget MB") from None


def build_images(client: Any, options: Options, plan: Plan) -> list[Built]:
    """Each platform's image built (the engine's own) or assembled (the others), measured and recorded."""
    native = build_native(client, options, plan.native, plan.source, plan.requirements, plan.epoch, plan.version)
    builts = []
    for target in plan.targets:
        built = native if target == plan.native else \
            build_cross(client, options, target, native, plan.source, plan.requirements, plan.epoch)
        builts.append(finish(client, options, built, plan))
    if options.bundle_out:  # the bundle is the same in every platform's image
        from . import served
        served.write_bundle(client, builts[0].target.reference, options.bundle_out)
        say(f"wrote the served bundle to {options.bundle_out}")
    from . import bases, debian_lock
    in_use = {ref for built in [native, *builts] for ref in (built.result["bases"]["builder"],
                                                             built.result["bases"]["runtime"])}
    bases.remove_superseded(client, {ref for ref in in_use if ref.startswith(bases.BASE_REPOSITORY)},
                            bases.named_by_lock(debian_lock.read_lock()))
    return builts


def write_provenance(options: Options, plan: Plan, built: Built, pushed: Pushed | None) -> None:
    """The image's SLSA provenance, beside its report (again after a push, naming what was pushed)."""
    from . import debian_lock, docker_build, provenance
    write_atomic(built.target.records["provenance"], json.dumps(provenance.statement(
        parameters=parameters(options, plan.reference), source=docker_build.source_state(SOURCE_URL),
        locks=[plan.requirements, debian_lock.LOCK], model=plan.source.artifact, images=built.images,
        epoch=built.result["source_date_epoch"], sbom=built.sbom.encode(),
        pushed=pushed.reference if pushed else None, pushed_type=pushed.media_type if pushed else None,
        debug=built.debug, version=plan.version,
        image={"image": built.target.reference, "id": built.result["id"],
               "layers": [row["digest"] for row in built.result["layers"]]},
        started=plan.started, finished=time.time()), indent=2) + "\n")


def report_and_gate(client: Any, options: Options, plan: Plan, builts: list[Built]) -> None:
    """The reports printed (stderr when stdout is for the pushed reference), the comparison, then the gates; a
    build that fails them keeps no tag."""
    from . import docker_build, gate, report, size_diff
    out = sys.stderr if options.push else sys.stdout
    for built in builts:
        write_provenance(options, plan, built, None)
        say(f"wrote {', '.join(str(path) for path in built.target.records.values())}")
        print(report.render(built.result), file=out)
    changes = None
    if options.compare:
        changes = size_diff.compare(options.compare, builts[0].result, size_diff.summary_file(options.summary))
        print("\n" + size_diff.render_text(changes), file=out)
    try:
        for built in builts:
            budget = built.result["budget"]
            gate.check(built.result, budget["limit"], budget["source"], budget.get("compressed_limit"))
        if changes is not None and options.max_growth is not None:
            size_diff.check_growth(changes, options.max_growth)
    except BuildError:
        docker_build.untag(client, [name for built in builts for name in
                                    (built.target.reference, *([built.debug["image"]] if built.debug else []))])
        raise


def push_and_verify(client: Any, options: Options, plan: Plan, builts: list[Built]) -> Pushed:
    """Every platform's image pushed as one reference (and the debug twins as another), pulled back and run."""
    from . import docker_build
    from .publish import publish, tags_for
    assert options.push is not None
    tags = tags_for(plan.version, docker_build.revision(), options.latest)
    pushed = publish(client, [(built.target.platform, built.target.reference) for built in builts], options.push,
                     tags)
    debugs = [(built.target.platform, built.debug) for built in builts if built.debug]
    if len(debugs) == len(builts):
        twins = publish(client, [(platform, debug["image"]) for platform, debug in debugs], options.push,
                        [f"{tag}-debug" for tag in tags])
        for _, debug in debugs:
            debug["pushed"] = twins.reference
        say(f"pushed the debug twin as {twins.reference}")
    for built in builts:
        write_provenance(options, plan, built, pushed)
    if options.manifests:
        from .manifests import render
        written = render(pushed.reference, options.manifests)
        say(f"wrote {len(written)} manifests with {pushed.reference} to {options.manifests}")
    return pushed


def build(options: Options) -> list[dict[str, Any]]:
    """The whole build; returns each platform's report (the engine's own platform first)."""
    from . import docker_build
    from .debug_twin import reference as twin_of
    started = time.time()
    source = checked_model(options)  # a wrong model file is its own error, engine or not
    client = docker_client()
    plan = prepare(client, options, source, started)
    kept = [name for target in plan.targets for name in (
        docker_build.builder_reference(target.reference), docker_build.cross_reference(target.reference),
        docker_build.cache_reference(target.reference), docker_build.stage_reference(target.reference),
        docker_build.cache_reference(twin_of(target.reference)))]
    with contextlib.ExitStack() as stack:
        for name in {plan.native.reference, *(target.reference for target in plan.targets)}:
            stack.enter_context(docker_build.leaving_nothing(client, name, remove=kept if options.clean else []))
        builts = build_images(client, options, plan)
        report_and_gate(client, options, plan, builts)
    if options.push:
        print(push_and_verify(client, options, plan, builts).reference)
    return [built.result for built in builts]


def parameters(options: Options, reference: str) -> dict[str, Any]:
    """The build's arguments as the provenance records them."""
    return {"model": str(options.model) if options.model else "models/diabetes (default)",
            "sample": str(options.sample) if options.sample else None, "code": [str(path) for path in options.code],
            "trust": options.trust, "tag": reference, "prune": options.prune, "debug": options.debug,
            "push": options.push, "latest": options.latest, "base": options.base, "grpc": options.grpc, "platform": options.platform}


TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TRUSTED = re.compile(r"^[A-Za-z_][\w.]*(,[A-Za-z_][\w.]*)*$")


def check_arguments(options: Options) -> str | None:
    """The first argument that cannot work, as one line; None when all can."""
    from .docker_build import split_reference
    from .publish import REPOSITORY as NAME, check_repository
    if options.latest and not options.push:
        return "--latest only applies with --push"
    if options.manifests and not options.push:
        return "--manifests only applies with --push (the manifests name the pushed digest)"
    if options.model is None and (options.sample or options.code or options.trust):
        return "--sample, --code and --trust apply to --model: give the model file too"
    if (options.max_growth is not None or options.summary) and not options.compare:
        return "--max-growth and --summary apply to --compare: give the earlier build's report too"
    if options.compare and not options.compare.is_file():
        return f"--compare {options.compare}: no such report (scripts/build.py --report writes one)"
    if options.grpc and options.prune:
        return "--grpc with --prune: --prune's trace calls the REST routes only and would cut gRPC's modules; use one"
    if options.platform:
        try:
            chosen = platforms.parse(options.platform)
        except ValueError as exc:
            return f"--platform: {exc}"
        if options.base and len(chosen) > 1:
            return "--base names one platform's base: build with one --platform, or without --base"
    if options.base and not PINNED_BASE.match(options.base):
        return f"--base {options.base}: name the base by digest, REPOSITORY@sha256:<64 hex digits> (a tag can move)"
    if options.size_budget is not None and options.size_budget <= 0:
        return f"--size-budget {options.size_budget:g}: give a size in MB greater than zero"
    if options.tag:
        repository, tag = split_reference(options.tag)
        if not NAME.match(repository) or not TAG.match(tag):
            return f"--tag {options.tag}: not an image reference (lowercase REPOSITORY[:TAG], e.g. churn-model:1.0)"
    bad = [item for item in options.trust if not TRUSTED.match(item)]
    if bad:
        return f"--trust {bad[0]}: give types as module.Class (comma-separated or repeated)"
    if options.push:
        try:
            check_repository(options.push)
        except BuildError as exc:
            return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    problem = check_arguments(options)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        build(options)
    except BuildError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the unexpected keeps its traceback
        traceback.print_exc()
        return 1
    return 0
