"""What went into an image and what came out, as an in-toto statement with a SLSA provenance v1 predicate: the
inputs (commit and dirty flag, the lock files' digests, the runtime base and its Debian lock section, the builder
image, the model file, SOURCE_DATE_EPOCH, the build's arguments) and the outputs (the image id, its layers' diff_ids,
the pushed manifest digest, the debug twin, the SBOM's digest). Unsigned: it records, it does not attest.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from modelcard.card import sha256_file

from . import ROOT
from .registry import MANIFEST_TYPE

STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/sklearn-model-service/sklearn-model-service/blob/main/docs/supply-chain.md"


def _sha256(path: Path) -> dict[str, str]:
    return {"sha256": sha256_file(path)}


def _hex(image_id: str) -> dict[str, str]:
    return {"sha256": image_id.removeprefix("sha256:")}


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement(*, parameters: dict[str, Any], source: dict[str, Any], locks: list[Path], model: Path,
              images: dict[str, tuple[str, str]], epoch: dict[str, Any], image: dict[str, Any],
              sbom: bytes, pushed: str | None, debug: dict[str, Any] | None, version: str,
              started: float, finished: float, pushed_type: str | None = None) -> dict[str, Any]:
    """The statement. `images`: role -> (reference, id) for the builder base, the builder and the runtime base;
    `image`: the report's reference, id and layers; `pushed`: REPOSITORY@sha256:... or None, a manifest or (a
    multi-platform build) an image index, as `pushed_type` says."""
    subjects = [{"name": image["image"], "digest": _hex(image["id"])}]
    if pushed:
        repository, digest = pushed.split("@", 1)
        subjects.append({"name": repository, "digest": _hex(digest),
                         "annotations": {"mediaType": pushed_type or MANIFEST_TYPE}})
    dependencies = [{"uri": f"git+{source['url']}@{source['commit']}", "digest": {"gitCommit": source["commit"]},
                     "annotations": {"dirty": source["dirty"]}}]
    dependencies += [{"name": path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name,
                      "digest": _sha256(path)} for path in locks]
    dependencies.append({"name": f"model:{model.name}", "digest": _sha256(model)})
    dependencies += [{"name": role, "uri": f"docker-image:{reference}", "digest": _hex(image_id)}
                     for role, (reference, image_id) in images.items()]
    byproducts = [{"name": "layer", "digest": _hex(digest)} for digest in image["layers"]]
    byproducts.append({"name": "sbom", "uri": "file:///usr/share/sbom/image.cdx.json",
                       "digest": {"sha256": hashlib.sha256(sbom).hexdigest()},
                       "mediaType": "application/vnd.cyclonedx+json"})
    if debug:
        byproducts.append({"name": "debug-twin", "uri": f"docker-image:{debug['image']}", "digest": _hex(debug["id"]),
                           **({"annotations": {"pushed": debug["pushed"]}} if debug.get("pushed") else {})})
    return {
        "_type": STATEMENT,
        "subject": subjects,
        "predicateType": PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": parameters,
                "internalParameters": {"SOURCE_DATE_EPOCH": epoch["seconds"], "epochSource": epoch["source"]},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": f"scripts/build.py (sklearn-model-service {version})"},
                "metadata": {"startedOn": _timestamp(started), "finishedOn": _timestamp(finished)},
                "byproducts": byproducts,
            },
        },
    }
