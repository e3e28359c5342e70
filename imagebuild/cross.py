"""Another platform's image with no emulator: what differs between two platforms' images is made for that
platform, the rest is taken from the engine's own image, and the image is assembled from layers, as ko and
rules_oci assemble images.

Of the image's layers (Dockerfile.runtime), only these differ between platforms:
- the runtime base's: imagebuild/bases.py unpacks that platform's locked Debian packages, in Python;
- the venv's and the standard library's bytecode: build/Dockerfile.cross, on the engine's own builder base, has
  pip unpack that platform's wheels (`--platform`, `--target`: nothing of theirs runs) and build/trim.py trim
  them with that platform's binutils, with its _sysconfigdata module (read from its libpython3.13-minimal .deb)
  in place of the builder's;
- the SBOM's, which lists that platform's wheels and packages.
The model's card, the service, the user's code and their bytecode are the same bytes on every platform, so they
are the engine's image's own layers. The config is the engine's image's, with the platform's architecture, its
base's history and the new layers' diff_ids. Only running the image needs the platform (tests/container/
test_arm64.py runs it under emulation and compares its answers, bit for bit, with the engine's own image).
"""
from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from . import BuildError, archive, debs
from .debian_lock import read_lock, sections
from .docker_build import BUILD_LABEL
from .platforms import Platform
from .reproducible import normalize_layer, rewrite_layer

DOCKERFILE = "build/Dockerfile.cross"
STDLIB_PACKAGE = "libpython3.13-minimal"  # holds _sysconfigdata__linux_<triplet>.py
SBOM_FILE = "usr/share/sbom/image.cdx.json"
# The engine's image's own layers, in Dockerfile.runtime's order: the first two and the last are made per platform.
VENV, STDLIB, SBOM = 0, 1, -1


def sysconfigdata(platform: Platform) -> tuple[str, bytes]:
    """The platform's _sysconfigdata__linux_<triplet>.py: its name and text, from its locked libpython3.13-minimal."""
    entry = sections(read_lock(), platform)["runtime"]["packages"][STDLIB_PACKAGE]
    name = f"_sysconfigdata__linux_{platform.triplet}.py"
    with debs.fetch(STDLIB_PACKAGE, entry).files() as files:
        for member in files:
            if member.isfile() and member.name.endswith(f"/python3.13/{name}"):
                return name, archive.member_bytes(files, member)
    raise BuildError(f"{STDLIB_PACKAGE} {entry['version']} ({platform.debian}) has no {name}")


def build_arguments(platform: Platform) -> dict[str, str]:
    """build/Dockerfile.cross's arguments for `platform`."""
    from .wheels import target
    return {"PIP_TARGET": " ".join(target(platform)), "TOOLS": f"{platform.triplet}-",
            "SYSCONFIGDATA": f"_sysconfigdata__linux_{platform.triplet}.py"}


def _sbom_layer(template: Path, text: str, out: Path) -> str:
    """The SBOM layer of the engine's image with this platform's SBOM in place of its own; returns the diff_id."""
    data = text.encode()
    rewritten = out.with_suffix(".raw.tar")
    with tarfile.open(template) as source, tarfile.open(rewritten, "w", format=tarfile.PAX_FORMAT) as layer:
        found = False
        for member in source:
            if member.name.lstrip("./") == SBOM_FILE:
                member.size, found = len(data), True
                layer.addfile(member, io.BytesIO(data))
            else:
                layer.addfile(member, source.extractfile(member) if member.isfile() else None)
    if not found:
        raise BuildError(f"the image's last layer has no {SBOM_FILE}: Dockerfile.runtime changed its layers "
                         f"(imagebuild/cross.py names them by position)")
    with tarfile.open(rewritten) as source:
        diff_id = normalize_layer(source, out)
    rewritten.unlink()
    return diff_id


def assemble(client: Any, template: str, template_base: str, base: str, parts: str, sbom: str,
             platform: Platform, reference: str) -> str:
    """Load as `reference` the image of `platform` made from `template` (the engine's own image, on
    `template_base`): `base`'s layers for the base's, `parts`' two layers (Dockerfile.cross) for the venv's and
    the standard library's, `sbom` in the SBOM's layer. Returns the engine's id of it."""
    with tempfile.TemporaryDirectory(prefix="cross-") as temporary:
        workdir = Path(temporary)

        def read(image: str, name: str) -> archive.Saved:
            folder = workdir / name
            folder.mkdir()
            with archive.saved(client.images.get(image)) as stream:
                return archive.read_saved(stream, folder)

        engines, bases, made = read(template, "template"), read(base, "base"), read(parts, "parts")
        base_layers = len(client.images.get(template_base).attrs["RootFS"]["Layers"])
        base_steps = len(client.api.history(template_base))
        own = engines.layers[base_layers:]
        history = engines.config.get("history", [])
        created = [entry.get("created_by", "") for entry in history[base_steps:] if not entry.get("empty_layer")]
        if len(made.layers) != 2 or "/opt/venv" not in created[VENV] or "sbom" not in created[SBOM]:
            raise BuildError(f"{template}'s layers are not Dockerfile.runtime's (venv, standard library, ..., SBOM): "
                             f"imagebuild/cross.py cannot assemble the {platform.name} image from them")
        layers = [*bases.layers, *(rewrite_layer(path) for _, path in made.layers), *own[STDLIB + 1:SBOM],
                  (_sbom_layer(own[SBOM][1], sbom, workdir / "sbom.tar"), workdir / "sbom.tar")]
        labels = {**engines.config["config"].get("Labels", {}), **bases.config["config"].get("Labels", {}),
                  BUILD_LABEL: reference}  # the base's lock key, and this image's build
        variant = {"variant": platform.variant} if platform.variant else {}
        config = {**{key: value for key, value in engines.config.items() if key != "variant"},
                  "architecture": platform.architecture, **variant,
                  "config": {**engines.config["config"], "Labels": labels},
                  "history": bases.config.get("history", []) + history[base_steps:],
                  "rootfs": {"type": "layers", "diff_ids": [diff_id for diff_id, _ in layers]}}
        return archive.load(client, workdir / "image.tar", config, layers, reference,
                            f"the {platform.name} image {reference}")
