"""The bundle an image serves, read back from the image without running it (a created container's archive)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from . import BuildError
from .archive import member_bytes

MODEL_DIR = "/app/model"
PRUNED = "/opt/venv/pruned.json"


def _archive(client: Any, reference: str, path: str) -> tarfile.TarFile:
    container = client.containers.create(reference)
    try:
        stream, _ = container.get_archive(path)
        return tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    finally:
        container.remove(force=True)


def _json_file(client: Any, reference: str, path: str) -> Any:
    """One JSON file of the image, parsed."""
    with _archive(client, reference, path) as archive:
        member = archive.extractfile(Path(path).name)
        if member is None:
            raise BuildError(f"{reference} holds no {path}")
        return json.loads(member.read())


def served_card(client: Any, reference: str) -> dict[str, Any]:
    """The card.json the image serves."""
    return _json_file(client, reference, f"{MODEL_DIR}/card.json")


def pruned(client: Any, reference: str) -> dict[str, Any]:
    """What --prune left out of the image (build/prune.py writes it into the venv)."""
    return _json_file(client, reference, PRUNED)


def write_bundle(client: Any, reference: str, target: Path) -> None:
    """Copy the served bundle (card.json and the model file) into `target`, to edit and build with --model."""
    target.mkdir(parents=True, exist_ok=True)
    with _archive(client, reference, MODEL_DIR) as archive:
        for member in archive.getmembers():
            name = Path(member.name)
            if member.isfile() and len(name.parts) == 2:  # model/<file>
                (target / name.name).write_bytes(member_bytes(archive, member))


def summary(card: dict[str, Any]) -> dict[str, Any]:
    """What the report shows of the served model."""
    return {
        "name": card["name"], "version": card["version"], "task": card["task"],
        "input": card.get("input", "array"), "sklearn_version": card["sklearn_version"],
        "features": [{"name": f["name"], "type": f["type"], "nullable": f.get("nullable", False),
                      **({"values": len(f["values"]), "closed": f.get("closed", True)} if "values" in f else {})}
                     for f in card["features"]],
        "labels": card["output"].get("labels"),
        "notes": card.get("notes", []),
    }
