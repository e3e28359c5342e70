"""Issue 15: the SBOM validates and lists what the image installs (read inside the container); the provenance
names the image the report prints; the debug twin has a shell and the image has none. (That one commit gives one
image id, digest and SBOM from a clean engine is tests/container/test_engines.py's first test.)"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagebuild import cli, sbom
from imagebuild.docker_build import commit_time, source_state
from imagebuild.reproducible import source_date_epoch

pytestmark = pytest.mark.container
# What the image holds, read inside it by its own Python (the runtime has no shell and a trimmed standard library:
# only os, re and json).
INVENTORY = r"""
import json, os, re
site = '/opt/venv/lib/python3.13/site-packages'
python = {}
for entry in os.listdir(site):
    if entry.endswith('.dist-info'):
        fields = dict(re.findall(r'^(Name|Version): (.+)$', open(os.path.join(site, entry, 'METADATA')).read(), re.M))
        python[re.sub(r'[-_.]+', '-', fields['Name']).lower()] = fields['Version']
debian = {}
for entry in os.listdir('/var/lib/dpkg/status.d'):
    if not entry.endswith('.md5sums'):
        fields = dict(re.findall(r'^(Package|Version): (.+)$', open('/var/lib/dpkg/status.d/' + entry).read(), re.M))
        debian[fields['Package']] = fields['Version']
shells = [path for path in ('/bin/sh', '/usr/bin/sh', '/bin/bash', '/bin/dash', '/busybox/sh', '/busybox/busybox')
          if os.path.lexists(path)]
print(json.dumps({'python': python, 'debian': debian, 'shells': shells,
                  'sbom': open('/usr/share/sbom/image.cdx.json').read()}))
"""


def inventory(client: Any, reference: str) -> dict[str, Any]:
    """Run INVENTORY in the image as production runs it (read-only, no capabilities, no network)."""
    output = client.containers.run(reference, entrypoint=["/opt/venv/bin/python3", "-c", INVENTORY], read_only=True,
                                   cap_drop=["ALL"], network_mode="none", remove=True)
    return json.loads(output)


def validate(text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, f"the SBOM does not validate against CycloneDX 1.6: {error}"


def check_sbom(client: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The SBOM beside the report validates, is the one in the image, and lists exactly what the image holds."""
    text = Path(report["records"]["sbom"]).read_text()
    validate(text)
    inside = inventory(client, report["image"])
    assert inside["sbom"] == text
    listed = sbom.packages(text)
    assert listed["pypi"] == inside["python"]
    assert listed["deb"] == inside["debian"]
    components = json.loads(text)["components"]
    assert all(len(c["hashes"][0]["content"]) == 64 for c in components)
    return inside


def test_sbom_validates_and_lists_what_the_default_image_installs(default_image, docker_client):
    inside = check_sbom(docker_client, default_image)
    assert {"scikit-learn", "numpy", "waitress", "flask"} <= set(inside["python"])
    assert {"libpython3.13-stdlib", "libc6", "ca-certificates"} <= set(inside["debian"])
    assert inside["shells"] == []


def test_sbom_of_the_pruned_image_still_lists_every_package(pruned_image, docker_client):
    """--prune keeps every *.dist-info: the packages are all there, with fewer of their files."""
    assert check_sbom(docker_client, pruned_image)["shells"] == []


def test_sbom_of_a_users_model_lists_its_own_packages(byo, docker_client):
    report = byo("lightgbm")
    inside = check_sbom(docker_client, report)
    assert {"lightgbm", "pandas"} <= set(inside["python"])
    model = [c for c in json.loads(Path(report["records"]["sbom"]).read_text())["components"]
             if c["type"] == "machine-learning-model"]
    assert [c["name"] for c in model] == ["lightgbm.joblib"]


def test_provenance_names_the_image_the_report_prints(default_image):
    statement = json.loads(Path(default_image["records"]["provenance"]).read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": default_image["image"],
                                     "digest": {"sha256": default_image["id"].removeprefix("sha256:")}}]
    predicate = statement["predicate"]
    assert [item["digest"]["sha256"] for item in predicate["runDetails"]["byproducts"] if item["name"] == "layer"] \
        == [row["digest"].removeprefix("sha256:") for row in default_image["layers"]]
    state = source_state(cli.SOURCE_URL)
    commit = predicate["buildDefinition"]["resolvedDependencies"][0]
    assert commit["digest"] == {"gitCommit": state["commit"]} and commit["annotations"] == {"dirty": state["dirty"]}
    names = {item.get("name") for item in predicate["buildDefinition"]["resolvedDependencies"]}
    assert {"requirements.txt", "build/debian.lock.json", "builder", "runtime base", "builder base"} <= names
    epoch = source_date_epoch(commit_time())
    assert predicate["buildDefinition"]["internalParameters"]["SOURCE_DATE_EPOCH"] == epoch.seconds
    assert default_image["labels"]["org.opencontainers.image.created"] == epoch.iso()


def test_debug_twin_starts_a_shell_and_the_image_keeps_none(default_image, docker_client, tmp_path, twin_removed):
    assert cli.main(["--debug", "--report", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["id"] == default_image["id"], "--debug changed the image itself"
    twin = report["debug"]["image"]
    assert twin == default_image["image"] + "-debug"
    output = docker_client.containers.run(twin, entrypoint=["/busybox/sh", "-c", "id -u; ls /app/model; echo $PATH"],
                                          read_only=True, cap_drop=["ALL"], network_mode="none", remove=True)
    uid, *model, path = output.decode().strip().splitlines()
    assert uid == "65532" and "card.json" in model and path.endswith(":/busybox")
    assert inventory(docker_client, default_image["image"])["shells"] == []
    assert set(inventory(docker_client, twin)["shells"]) == {"/busybox/sh", "/busybox/busybox"}
    twin_layers = docker_client.images.get(twin).attrs["RootFS"]["Layers"]
    assert twin_layers[:-1] == [row["digest"] for row in default_image["layers"]]
    statement = json.loads(Path(report["records"]["provenance"]).read_text())
    assert {"name": "debug-twin", "uri": f"docker-image:{twin}", "digest": {"sha256": report["debug"]["id"][7:]}} \
        in statement["predicate"]["runDetails"]["byproducts"]
