"""Publish the image (exercise 4): tag, push through the Docker SDK, then prove it by pulling it back by digest,
running it and making one prediction. Only then is `REPOSITORY@sha256:...` the result.

Credentials: REGISTRY_USERNAME and REGISTRY_PASSWORD (a password or token) from the environment, else whatever
the Docker config file holds for the registry. The secret is never printed: every message is scrubbed of it.
"""
from __future__ import annotations

import os
import re
from typing import Any

from . import BuildError
from .http_calls import call_json, free_port, ready, wait_until
from .progress import say

READY_TIMEOUT = 60.0
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


def _credentials() -> dict[str, str] | None:
    username, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
    if bool(username) != bool(password):
        raise BuildError("set both REGISTRY_USERNAME and REGISTRY_PASSWORD, or neither (then the Docker config "
                         "file's credentials are used)")
    return {"username": username, "password": password} if username else None


def _scrub(message: str, auth: dict[str, str] | None) -> str:
    text = " ".join(str(message).split())
    if auth and auth["password"]:
        text = text.replace(auth["password"], "***")
    return text


def _explain(registry: str, message: str) -> str:
    lowered = message.lower()
    if any(word in lowered for word in ("unauthorized", "denied", "authentication required", "401", "403")):
        return (f"the registry {registry} refused the credentials or the repository ({message}); check "
                f"REGISTRY_USERNAME/REGISTRY_PASSWORD or `docker login {registry}`")
    if any(word in lowered for word in ("connection refused", "no such host", "dial tcp", "timeout", "i/o")):
        return f"the registry {registry} is unreachable ({message}); check its address and that it is up"
    return f"the registry {registry} answered: {message}"


def _login(client: Any, registry: str, auth: dict[str, str]) -> None:
    import docker.errors
    try:
        client.login(username=auth["username"], password=auth["password"],
                     registry=None if registry == "docker.io" else registry, reauth=True)
    except docker.errors.APIError as exc:
        raise BuildError(f"login failed: {_explain(registry, _scrub(exc.explanation or exc, auth))}") from None


def _push(client: Any, repository: str, tag: str, auth: dict[str, str] | None) -> str:
    """Push one tag; the stream is read to the end and any errorDetail fails. Returns the manifest digest."""
    import docker.errors
    registry = registry_of(repository)
    digest = None
    try:
        for line in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
            if "errorDetail" in line or "error" in line:
                detail = line.get("errorDetail", {}).get("message") or line.get("error")
                raise BuildError(f"push of {repository}:{tag} failed: {_explain(registry, _scrub(detail, auth))}")
            digest = (line.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise BuildError(f"push of {repository}:{tag} failed: "
                         f"{_explain(registry, _scrub(exc.explanation or exc, auth))}") from None
    if not digest:
        raise BuildError(f"push of {repository}:{tag} reported no digest")
    return digest


def verify(client: Any, pinned: str) -> None:
    """Run the pulled image as production would and check that an example predicts as the image says."""
    port = free_port()
    container = client.containers.run(
        pinned, detach=True, network_mode="host", read_only=True, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], environment={"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"

    def running() -> bool:
        container.reload()
        return container.status != "exited"

    try:
        if wait_until(lambda: ready(base), READY_TIMEOUT, running) is None:
            logs = container.logs().decode(errors="replace").strip().splitlines()
            raise BuildError(f"{pinned} did not become ready: {(logs or ['no logs'])[-1]}")
        example = call_json("GET", base + "/example")[1]["examples"][0]
        status, answer = call_json("POST", base + "/predict", example["request"])
        if status != 200 or answer != example["response"]:
            raise BuildError(f"{pinned} answered {status} {answer} to its own example")
    finally:
        container.remove(force=True)


def publish(client: Any, image: str, repository: str, tags: list[str]) -> str:
    """Tag `image` as repository:tag for each tag, push, verify by digest; returns `repository@sha256:...`."""
    import docker.errors
    auth = _credentials()
    registry = registry_of(repository)
    if auth:
        _login(client, registry, auth)
    check_repository(repository)
    local = client.images.get(image)
    digests = set()
    for tag in tags:
        try:
            local.tag(repository, tag=tag)
        except docker.errors.APIError as exc:
            raise BuildError(f"cannot tag {repository}:{tag}: {exc.explanation or exc}") from None
        say(f"pushing {repository}:{tag}")
        digests.add(_push(client, repository, tag, auth))
    if len(digests) != 1:
        raise BuildError(f"the tags of {repository} point at different digests: {sorted(digests)}")
    pinned = f"{repository}@{digests.pop()}"
    for tag in tags:
        client.images.remove(f"{repository}:{tag}")
    say(f"pulling {pinned} back and running it")
    try:
        client.images.pull(pinned, auth_config=auth)
    except docker.errors.APIError as exc:
        raise BuildError(f"pull of {pinned} failed: {_explain(registry, _scrub(exc.explanation or exc, auth))}") from None
    verify(client, pinned)
    return pinned


def tags_for(version: str, revision: str, latest: bool) -> list[str]:
    """The service version, the git short SHA and, on request, latest."""
    tags = [version, re.sub(r"[^A-Za-z0-9_.-]", "-", revision)]
    return tags + (["latest"] if latest else [])
