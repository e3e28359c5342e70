"""Publish the image (exercise 4): push it over the registry API (imagebuild/registry.py: the same bytes from
every engine and image store), then prove it by pulling it back by digest through the engine, running it and
making one prediction. Only then is `REPOSITORY@sha256:...` the result.

Credentials: REGISTRY_USERNAME and REGISTRY_PASSWORD (a password or token) from the environment, else whatever
the Docker config file holds for the registry (its credential helpers included). The secret is never printed:
every message is scrubbed of it.
"""
from __future__ import annotations

import os
import re
from typing import Any

from . import BuildError
from .http_calls import call_json, free_port, ready, wait_until
from .platforms import Platform, of_engine
from .progress import say
from .registry import Pushed

READY_TIMEOUT = 60.0
EMULATED_READY_TIMEOUT = 600.0  # scikit-learn's import and the warm-up under qemu (measured: docs/platforms.md)
EMULATION_HINT = ("another platform's image runs only where qemu-user-static is registered through binfmt_misc; "
                  "Docker Desktop has it, on Linux see docs/platforms.md")
# Docker's reference grammar for a repository (no tag, no digest): [host[:port]/]component(/component)*
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$")


def check_repository(repository: str) -> None:
    """Fail before building when the name cannot be pushed: one line with the rule and an example."""
    if not REPOSITORY.match(repository) or len(repository) > 255:
        raise BuildError(f"'{repository}' is not a repository name: lowercase letters, digits and . _ - "
                         f"between slashes, no tag or digest, e.g. ghcr.io/you/sklearn-model-service")


def registry_of(repository: str) -> str:
    """The registry host of a repository reference, as docker resolves it."""
    first = repository.split("/", 1)[0]
    if "/" in repository and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _credentials(registry: str) -> dict[str, str] | None:
    username, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
    if bool(username) != bool(password):
        raise BuildError("set both REGISTRY_USERNAME and REGISTRY_PASSWORD, or neither (then the Docker config "
                         "file's credentials are used)")
    if username and password:
        return {"username": username, "password": password}
    from docker import auth
    try:
        found = auth.load_config().resolve_authconfig(None if registry == "docker.io" else registry)
    except Exception as exc:  # noqa: BLE001 - a credential helper's failure: say which, keep going anonymously
        say(f"the Docker config's credentials for {registry} could not be read ({type(exc).__name__}); pushing "
            f"without")
        return None
    if not found:
        return None
    username = found.get("username") or found.get("Username")
    password = found.get("password") or found.get("Password") or found.get("Secret")
    return {"username": username, "password": password} if username and password else None


def _scrub(message: str, auth: dict[str, str] | None) -> str:
    text = " ".join(str(message).split())
    if auth and auth["password"]:
        text = text.replace(auth["password"], "***")
    return text


def _explain(registry: str, message: str, status: int = 0) -> str:
    lowered = message.lower()
    if status in (401, 403) or any(word in lowered for word in ("unauthorized", "denied", "authentication required")):
        return (f"the registry {registry} refused the credentials or the repository ({message}); check "
                f"REGISTRY_USERNAME/REGISTRY_PASSWORD or `docker login {registry}`")
    if status == 0 or any(word in lowered for word in ("connection refused", "no such host", "timed out")):
        return f"the registry {registry} is unreachable ({message}); check its address and that it is up"
    return f"the registry {registry} answered: {message}"


def check_access(client: Any, repository: str) -> None:
    """Before anything is built: the name, the credentials, and that the registry takes them (one line)."""
    from .registry import RegistryError, check_push
    check_repository(repository)
    registry = registry_of(repository)
    auth = _credentials(registry)
    try:
        check_push(client, repository, registry, auth)
    except RegistryError as exc:
        raise BuildError(f"--push {repository}: {_explain(registry, _scrub(str(exc), auth), exc.status)}") from None


def verify(client: Any, pinned: str, platform: Platform, emulated: bool) -> None:
    """Run the pulled image as production would (on `platform`: under emulation when the engine runs another)
    and check that an example predicts as the image says. Under emulation with one worker: the check needs one
    answer, and each worker's start costs there about 50 s of CPU (scikit-learn's import under qemu, measured:
    docs/platforms.md), which the other workers would spend after the first was ready."""
    port = free_port()
    workers = {"SERVICE_WORKERS": "1"} if emulated else {}
    container = client.containers.run(
        pinned, detach=True, network_mode="host", read_only=True, cap_drop=["ALL"], platform=platform.name,
        security_opt=["no-new-privileges"],
        environment={"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": str(port), **workers})
    base = f"http://127.0.0.1:{port}"

    def running() -> bool:
        container.reload()
        return container.status != "exited"

    try:
        if wait_until(lambda: ready(base), EMULATED_READY_TIMEOUT if emulated else READY_TIMEOUT, running) is None:
            logs = container.logs().decode(errors="replace").strip().splitlines()
            hint = f" (run under emulation: {EMULATION_HINT})" if emulated else ""
            raise BuildError(f"{pinned} ({platform.name}) did not become ready: {(logs or ['no logs'])[-1]}{hint}")
        example = call_json("GET", base + "/example")[1]["examples"][0]
        status, answer = call_json("POST", base + "/predict", example["request"])
        if status != 200 or answer != example["response"]:
            raise BuildError(f"{pinned} ({platform.name}) answered {status} {answer} to its own example")
    finally:
        container.remove(force=True)


def publish(client: Any, images: list[tuple[Platform, str]], repository: str, tags: list[str]) -> Pushed:
    """Push the images (one per platform) as repository:tag for each tag: one image as its manifest, several as
    one image index; then pull each platform's image back by its own digest, run it (under emulation where the
    engine cannot run it natively) and check a prediction. Returns what was pushed (its reference,
    `repository@sha256:...`, names the index when there are several)."""
    import docker.errors
    from .registry import RegistryError, push
    check_repository(repository)
    registry = registry_of(repository)
    auth = _credentials(registry)
    names = ", ".join(platform.name for platform, _ in images)
    say(f"pushing {repository}:{', :'.join(tags)} ({names})")
    try:
        pushed = push(client, images, repository, registry, tags, auth)
    except RegistryError as exc:
        raise BuildError(f"push of {repository} failed: {_explain(registry, _scrub(str(exc), auth), exc.status)}") \
            from None
    engine = of_engine(client)
    for platform, _ in images:
        pinned = f"{repository}@{pushed.manifests[platform.name]}"
        say(f"pulling {pinned} ({platform.name}) back and running it"
            + ("" if platform == engine else " under emulation"))
        try:
            client.images.pull(pinned, auth_config=auth, platform=platform.name)
        except docker.errors.APIError as exc:
            raise BuildError(f"pull of {pinned} failed: {_explain(registry, _scrub(exc.explanation or exc, auth))}") \
                from None
        verify(client, pinned, platform, emulated=platform != engine)
    return pushed


def tags_for(version: str, revision: str, latest: bool) -> list[str]:
    """The service version, the git short SHA and, on request, latest."""
    tags = [version, re.sub(r"[^A-Za-z0-9_.-]", "-", revision)]
    return tags + (["latest"] if latest else [])
