"""The image's software bill of materials, CycloneDX 1.6 JSON (cyclonedx-python-lib's model): every Python
distribution the builder installs (version, and the sha256 of the wheel or sdist it installed, one of the hashes
requirements.txt pins), every Debian package of the runtime base (version, and the .deb's sha256 from
build/debian.lock.json), and the model file. Written before the runtime build, so the image carries it at PATH;
its time is SOURCE_DATE_EPOCH and its serial number is derived from its content, so it is reproducible too.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from modelcard.card import sha256_file

from . import BuildError
from .debian_lock import SUITE
from .docker_build import split_reference
from .requirements import normalize
from .wheels import blocks

PATH = "/usr/share/sbom/image.cdx.json"  # where the image carries it
DEBIAN_RELEASE = {"trixie": "13"}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


@dataclass(frozen=True)
class Distribution:
    """A locked Python requirement and the file of it the builder installs."""

    name: str
    version: str
    file: str
    sha256: str


def python_distributions(requirements: Path, wheelhouse: Path) -> list[Distribution]:
    """Each requirement of requirements.txt with the wheelhouse file whose sha256 the lock pins for it."""
    by_hash = {sha256_file(path): path.name for path in wheelhouse.iterdir() if path.is_file()}
    found = []
    for block in blocks(requirements):
        match = REQUIREMENT.match(block)
        if match is None:
            raise BuildError(f"{requirements.name}: {block.splitlines()[0]!r} is not pinned as name==version")
        pinned = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
        installed = [digest for digest in pinned if digest in by_hash]
        if not installed:
            raise BuildError(f"no file in the wheelhouse {wheelhouse} matches the hashes {requirements.name} pins "
                             f"for {match.group(1)}=={match.group(2)}: remove the folder and build again")
        found.append(Distribution(normalize(match.group(1)), match.group(2), by_hash[installed[0]], installed[0]))
    return found


BASE_PROPERTY = "sklearn-model-service:runtime-base"


def document(reference: str, distributions: list[Distribution], debian: dict[str, dict[str, str]],
             model: Path, epoch_seconds: int, base: str) -> str:
    """The CycloneDX 1.6 JSON text; `base` (the runtime base image) is a property of the image's component."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    def sha256(digest: str) -> list[Any]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=digest)]

    components = [Component(name=item.name, version=item.version, type=ComponentType.LIBRARY,
                            bom_ref=f"pypi:{item.name}", purl=PackageURL("pypi", name=item.name, version=item.version),
                            hashes=sha256(item.sha256), properties=[Property(name="file", value=item.file)])
                  for item in distributions]
    distro = f"debian-{DEBIAN_RELEASE.get(SUITE, SUITE)}"
    components += [Component(name=name, version=entry["version"], type=ComponentType.LIBRARY, bom_ref=f"deb:{name}",
                             purl=PackageURL("deb", "debian", name, entry["version"],
                                             {"arch": _architecture(entry["file"]), "distro": distro}),
                             hashes=sha256(entry["sha256"]), properties=[Property(name="file", value=entry["file"])])
                   for name, entry in sorted(debian.items())]
    model_sha256 = sha256_file(model)
    components.append(Component(name=model.name, type=ComponentType.MACHINE_LEARNING_MODEL, bom_ref="model",
                                hashes=sha256(model_sha256)))
    repository, tag = split_reference(reference)
    image = Component(name=repository, version=tag, type=ComponentType.CONTAINER, bom_ref="image",
                      properties=[Property(name=BASE_PROPERTY, value=base)])
    timestamp = datetime.fromtimestamp(epoch_seconds, UTC)
    identity = hashlib.sha256(repr((reference, distributions, sorted(debian.items()), model_sha256,
                                    epoch_seconds, base)).encode()).hexdigest()
    bom = Bom(components=components, serial_number=uuid.UUID(identity[:32], version=5),
              metadata=BomMetaData(component=image, timestamp=timestamp))
    bom.register_dependency(image, components)
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def _architecture(file: str) -> str:
    """The Debian architecture (amd64, arm64) or all, from the .deb's name (name_version_arch.deb)."""
    return file.removesuffix(".deb").rsplit("_", 1)[-1]


def packages(text: str) -> dict[str, dict[str, str]]:
    """An SBOM's packages by kind ("pypi", "deb"): name -> version."""
    import json
    found: dict[str, dict[str, str]] = {"pypi": {}, "deb": {}}
    for component in json.loads(text).get("components", []):
        kind = component.get("purl", "").removeprefix("pkg:").split("/", 1)[0]
        if kind in found:
            found[kind][component["name"]] = component["version"]
    return found
