"""deploy/ checked offline (Kubernetes schemas, checkov's Kubernetes policies) and the image run with plain
`docker run` under what the pod spec sets: user, read-only root, no capabilities, CPU quota, the probes' paths and
timings, the grace period. Also: workers follow the CPU quota and the affinity mask."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from imagebuild.http_calls import call, free_port
from imagebuild.manifests import DEPLOY, render

from .. import venvs
from .conftest import Running, log_entries, wait_ready

pytestmark = pytest.mark.container

TOOLS = ["kubernetes-validate==1.37.0", "checkov==3.3.30"]
# checkov checks skipped on purpose, each with its reason (none today: every check passes).
SKIPPED_CHECKS: dict[str, str] = {}


@pytest.fixture(scope="module")
def tools() -> Path:
    return venvs.venv("kubernetes", TOOLS).parent


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """The manifests as `--push --manifests` writes them, plus a Pod made of the InferenceService's predictor (the
    Kubernetes-typed part of a KServe resource, which no Kubernetes schema covers as a whole)."""
    out = tmp_path_factory.mktemp("manifests")
    render("127.0.0.1:5000/sklearn-model-service@sha256:" + "ab" * 32, out)
    service = yaml.safe_load((out / "kserve/inferenceservice.yaml").read_text())
    predictor = service["spec"]["predictor"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "kserve-predictor", "namespace": service["metadata"]["namespace"]},
           "spec": {key: predictor[key] for key in ("containers", "securityContext", "automountServiceAccountToken")}}
    (out / "kserve-predictor-pod").mkdir()
    (out / "kserve-predictor-pod/pod.yaml").write_text(yaml.safe_dump(pod))
    return out


def manifests(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.rglob("*.yaml"))
            if path.name != "kustomization.yaml" and path.parent.name != "kserve"]


def test_manifests_validate_against_the_kubernetes_schemas(tools, rendered):
    files = manifests(rendered)
    assert {p.name for p in files} >= {"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml",
                                       "networkpolicy.yaml", "namespace.yaml", "pod.yaml"}
    result = subprocess.run([str(tools / "kubernetes-validate"), "--strict", *map(str, files)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(files), result.stdout


def test_manifests_pass_checkovs_kubernetes_policies(tools, rendered):
    command = [str(tools / "checkov"), "-d", str(rendered), "--framework", "kubernetes", "--skip-download",
               "-o", "json"]
    if SKIPPED_CHECKS:
        command += ["--skip-check", ",".join(SKIPPED_CHECKS)]
    result = subprocess.run(command, capture_output=True, text=True)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    summary = reports[0]["summary"]
    failed = [(c["check_id"], c["file_path"], c["check_name"]) for c in reports[0]["results"]["failed_checks"]]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, failed
    assert summary["passed"] > 100
    checked = {c["file_path"].rsplit("/", 1)[-1] for c in reports[0]["results"]["passed_checks"]}
    assert {"deployment.yaml", "service.yaml", "pod.yaml"} <= checked


def pod_spec() -> tuple[dict, dict]:
    deployment = yaml.safe_load((DEPLOY / "kubernetes/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi")
    return int(quantity[:-2]) * 1024 * 1024


def probe_answers(url: str, probe: dict) -> int:
    status, _, _ = call("GET", url + probe["httpGet"]["path"], None, {}, timeout=probe["timeoutSeconds"])
    return status


def test_the_image_runs_as_the_pod_spec_says(docker_client, image, request):
    """The Deployment's constraints with plain `docker run`: the startup probe passes within its budget, readiness
    and liveness answer within their timeouts, SIGTERM turns readiness to 503 at once and the container exits
    within the grace period."""
    pod, container_spec = pod_spec()
    security = {**pod["securityContext"], **container_spec["securityContext"]}
    assert security["runAsNonRoot"] and not security["allowPrivilegeEscalation"]
    limits = container_spec["resources"]["limits"]
    environment = {e["name"]: e["value"] for e in container_spec["env"]}
    port = free_port()
    container = docker_client.containers.run(
        image["image"], detach=True, network_mode="host",
        user=f"{security['runAsUser']}:{security['runAsGroup']}",
        read_only=security["readOnlyRootFilesystem"], cap_drop=security["capabilities"]["drop"],
        security_opt=["no-new-privileges"], nano_cpus=int(cpus(limits["cpu"]) * 1e9),
        mem_limit=mebibytes(limits["memory"]),
        environment={**environment, "SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": str(port)})
    running = Running(container, port)
    try:
        startup = container_spec["startupProbe"]
        waited = wait_ready(running, timeout=startup["periodSeconds"] * startup["failureThreshold"])
        assert waited < startup["periodSeconds"] * startup["failureThreshold"]
        for name in ("readinessProbe", "livenessProbe"):
            assert probe_answers(running.url, container_spec[name]) == 200, name
        started = time.monotonic()
        container.kill(signal="SIGTERM")
        readiness = container_spec["readinessProbe"]
        deadline = started + readiness["periodSeconds"]
        while time.monotonic() < deadline:
            try:
                if probe_answers(running.url, readiness) == 503:
                    break
            except OSError:
                break  # already gone: as good as 503 for the endpoints
            time.sleep(0.05)
        else:
            pytest.fail("readiness did not turn 503 within one probe period of SIGTERM")
        result = container.wait(timeout=pod["terminationGracePeriodSeconds"])
        assert time.monotonic() - started < pod["terminationGracePeriodSeconds"]
        assert result["StatusCode"] == 0
        decisions = [entry for entry in log_entries(container) if "decided_by" in entry]
        assert [entry["workers"] for entry in decisions] == [min(int(cpus(limits["cpu"])), os.cpu_count())]
    finally:
        if request.session.testsfailed:
            print(container.logs().decode(errors="replace")[-3000:])
        container.remove(force=True)


@pytest.mark.parametrize("limits,workers,decided_by", [
    ({"nano_cpus": 1_000_000_000}, 1, r"cgroup v[12] cpu\.(max|cfs_quota_us): 1 CPUs"),
    ({"cpuset_cpus": "0"}, 1, r"affinity: 1 CPU"),
])
def test_workers_follow_the_cpu_quota_and_the_affinity_mask(docker_client, image, limits, workers, decided_by):
    """`docker run --cpus 1` and `--cpuset-cpus 0`: one worker, and the start-up log says which limit decided."""
    port = free_port()
    container = docker_client.containers.run(
        image["image"], detach=True, network_mode="host", read_only=True, cap_drop=["ALL"],
        environment={"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": str(port)}, **limits)
    try:
        wait_ready(Running(container, port))
        entries = log_entries(container)
        decision = next(e for e in entries if e.get("decided_by"))
        assert decision["workers"] == workers, decision
        assert re.fullmatch(decided_by, decision["decided_by"]), decision
        ready = [e for e in entries if e["message"].startswith("model ")]
        assert len(ready) == workers
    finally:
        container.remove(force=True)
