"""Push an image over the registry API (OCI distribution), from its config and layers, instead of `docker push`:
every engine and image store then publishes the same bytes, so one commit has one pushed digest. (`docker push`
gzips the layers itself on the classic store, and on the containerd store pushes them as that store holds them,
which for an image loaded from an archive is uncompressed: three times the bytes, and another digest.)

The layers are gzipped here (archive.gzipped: level 6, no file name, time 0, Python's zlib, so a host whose zlib
differs, such as zlib-ng, pushes other bytes for the same image id) into a Docker v2 manifest, the media types
`docker push` uses. Blobs the registry already has are not sent again; a layer the build measured (its blob's
digest is known: imagebuild/report.py) is not even compressed then, nor when the registry mounts it from another
repository it was pushed to. Authentication: HTTP Basic, or a bearer token from the realm the registry names
(Docker Hub, GHCR, ...), with the given credentials or anonymously. Plain HTTP only where the engine itself would
use it (its insecure registries, and 127.0.0.0/8 by default).
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import BuildError, archive, report
from .platforms import Platform

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CHUNK = 16 << 20  # bytes per upload request
DOCKER_HUB = "registry-1.docker.io"


class RegistryError(Exception):
    """What the registry answered, one line (the caller adds the hint)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Session:
    """Requests to one registry, authenticated as it asks."""

    host: str
    secure: bool
    credentials: dict[str, str] | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # scope -> bearer token

    def url(self, path: str) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}{path}"

    def request(self, method: str, url: str, scope: str, data: bytes | BinaryIO | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            request = urllib.request.Request(url, data=data, method=method, headers={**(headers or {}),
                                                                                   **self._authorization(scope)})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as error:
                body = error.read()
                if error.code == 401 and attempt == 0 and self._authenticate(error.headers, scope):
                    continue
                if method == "HEAD" and error.code == 404:
                    return 404, dict(error.headers), b""
                raise RegistryError(error.code, f"{method} {urllib.parse.urlparse(url).path}: {error.code} "
                                                f"{_reason(body) or error.reason}") from None
            except (urllib.error.URLError, OSError) as error:
                raise RegistryError(0, f"{self.host}: {getattr(error, 'reason', error)}") from None
        raise RegistryError(401, f"{method} {urllib.parse.urlparse(url).path}: unauthorized")

    def _authorization(self, scope: str) -> dict[str, str]:
        if scope in self.tokens:
            return {"Authorization": self.tokens[scope]}
        return {}

    def _authenticate(self, headers: Any, scope: str) -> bool:
        """Learn how to authenticate from a 401's WWW-Authenticate; False when there is nothing to try."""
        challenge = headers.get("WWW-Authenticate", "")
        scheme, _, parameters = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.credentials:
                return False
            self.tokens[scope] = "Basic " + base64.b64encode(
                f"{self.credentials['username']}:{self.credentials['password']}".encode()).decode()
            return True
        if scheme.lower() != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', parameters))
        query = {"service": fields.get("service", ""), "scope": fields.get("scope", scope)}
        request = urllib.request.Request(f"{fields['realm']}?{urllib.parse.urlencode(query)}")
        if self.credentials:
            request.add_header("Authorization", "Basic " + base64.b64encode(
                f"{self.credentials['username']}:{self.credentials['password']}".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise RegistryError(error.code, f"token from {fields['realm']}: {error.code} {error.reason}") from None
        self.tokens[scope] = "Bearer " + (answer.get("token") or answer.get("access_token") or "")
        return True


def _reason(body: bytes) -> str:
    """The registry's own error message, when it sent the usual {"errors": [{"code", "message"}]}."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return ""
    return "; ".join(f"{error.get('code', '')} {error.get('message', '')}".strip() for error in errors)


def is_secure(client: Any, host: str) -> bool:
    """Whether the engine would speak HTTPS to `host`: not when it lists the host as insecure or the host is in
    an insecure range (127.0.0.0/8 by default)."""
    config = client.info().get("RegistryConfig") or {}
    index = (config.get("IndexConfigs") or {}).get(host)
    if index is not None and index.get("Secure") is False:
        return False
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost":
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return True
    ranges = config.get("InsecureRegistryCIDRs") or ["127.0.0.0/8", "::1/128"]
    return not any(address in ipaddress.ip_network(cidr) for cidr in ranges)


def api_host(registry: str) -> str:
    return DOCKER_HUB if registry == "docker.io" else registry


def repository_path(repository: str, registry: str) -> str:
    """The repository's name on its registry (Docker Hub's one-part names live under library/)."""
    name = repository.split("/", 1)[1] if repository.startswith(registry + "/") else repository
    return f"library/{name}" if registry == "docker.io" and "/" not in name else name


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None


def has_blob(session: Session, name: str, digest: str) -> bool:
    status, _, _ = session.request("HEAD", session.url(f"/v2/{name}/blobs/{digest}"), f"repository:{name}:pull,push")
    return status == 200


def upload(session: Session, name: str, blob: Blob) -> None:
    """Send a blob unless the registry has it: an upload session, chunks, then its digest."""
    scope = f"repository:{name}:pull,push"
    if has_blob(session, name, blob.digest):
        return
    _, headers, _ = session.request("POST", session.url(f"/v2/{name}/blobs/uploads/"), scope, data=b"")
    location = urllib.parse.urljoin(session.url("/"), headers["Location"])
    offset = 0
    source = blob.path.open("rb") if blob.path is not None else None
    try:
        while True:
            chunk = source.read(CHUNK) if source is not None else (blob.data or b"")[offset:offset + CHUNK]
            if not chunk:
                break
            _, headers, _ = session.request("PATCH", location, scope, data=chunk, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            location = urllib.parse.urljoin(session.url("/"), headers["Location"])
            offset += len(chunk)
    finally:
        if source is not None:
            source.close()
    separator = "&" if "?" in location else "?"
    session.request("PUT", f"{location}{separator}digest={urllib.parse.quote(blob.digest)}", scope, data=b"",
                    headers={"Content-Type": "application/octet-stream"})


def manifest(config: Blob, layers: list[Blob]) -> bytes:
    """The Docker v2 manifest, written the same way every time."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": config.size, "digest": config.digest},
        "layers": [{"mediaType": LAYER_TYPE, "size": layer.size, "digest": layer.digest} for layer in layers],
    }, indent=3).encode()


@dataclass(frozen=True)
class Pushed:
    """What a push published: `repository@sha256:...` of the manifest (one image) or of the image index (several,
    one per platform), its media type, and each platform's own manifest digest."""

    reference: str
    media_type: str
    manifests: dict[str, str]  # platform name -> manifest digest


def mounted(session: Session, name: str, blob: report.MeasuredBlob) -> bool:
    """Whether the registry mounted the blob into `name` from a repository of its own that was pushed it before
    (the distribution API's cross-repository mount, as `docker push` does): no upload then. A registry that
    cannot opens an upload instead, which is cancelled here."""
    for source in reversed(blob.pushed_to):
        host, _, repository = source.partition("/")
        if host != session.host or repository == name:
            continue
        query = urllib.parse.urlencode({"mount": blob.digest, "from": repository})
        try:
            status, headers, _ = session.request("POST", session.url(f"/v2/{name}/blobs/uploads/?{query}"),
                                                 f"repository:{name}:pull,push repository:{repository}:pull",
                                                 data=b"")
            if status == 201:
                return True
            if "Location" in headers:
                session.request("DELETE", urllib.parse.urljoin(session.url("/"), headers["Location"]),
                                f"repository:{name}:pull,push")
        except RegistryError:  # no access to that repository any more, say: the blob is sent instead
            continue
    return False


def _push_image(session: Session, name: str, client: Any, image: str,
                measured: dict[str, report.MeasuredBlob]) -> tuple[bytes, list[str]]:
    """Send an engine image's layers and config (those the registry lacks); returns its manifest document and its
    layers' diff_ids. A layer whose gzip blob the build measured (`measured`) is neither compressed nor sent when
    the repository has it or the registry mounts it from another repository: pushing the default image again took
    6 s of gzip before."""
    with tempfile.TemporaryDirectory(prefix="push-") as temporary:
        workdir = Path(temporary)
        with archive.saved(client.images.get(image)) as stream:
            saved = archive.read_saved(stream, workdir)
        layers = []
        for diff_id, path in saved.layers:
            known = measured.get(diff_id)
            if known is not None and (has_blob(session, name, known.digest) or mounted(session, name, known)):
                layers.append(Blob(known.digest, known.size))
                continue
            with path.open("rb") as source, path.with_suffix(".gz").open("wb") as out:
                blob = Blob(*archive.gzipped(source, out), path=path.with_suffix(".gz"))
            upload(session, name, blob)
            layers.append(blob)
        config = Blob(saved.config_digest, len(saved.config_bytes), data=saved.config_bytes)
        upload(session, name, config)
    return manifest(config, layers), [diff_id for diff_id, _ in saved.layers]


def index(entries: list[tuple[Platform, bytes]]) -> bytes:
    """The image index (Docker's manifest list, the type that goes with Docker v2 manifests) of one manifest per
    platform, written the same way every time."""
    def platform_of(platform: Platform) -> dict[str, str]:
        return {"architecture": platform.architecture, "os": "linux",
                **({"variant": platform.variant} if platform.variant else {})}
    return json.dumps({
        "schemaVersion": 2, "mediaType": INDEX_TYPE,
        "manifests": [{"mediaType": MANIFEST_TYPE, "size": len(document), "digest": _digest(document),
                       "platform": platform_of(platform)} for platform, document in entries],
    }, indent=3).encode()


def _digest(document: bytes) -> str:
    return "sha256:" + hashlib.sha256(document).hexdigest()


def _put_manifest(session: Session, name: str, reference: str, document: bytes, media_type: str) -> None:
    """PUT a manifest or index under a tag or its digest, and check the digest the registry says it stored."""
    _, headers, _ = session.request("PUT", session.url(f"/v2/{name}/manifests/{reference}"),
                                    f"repository:{name}:pull,push", data=document,
                                    headers={"Content-Type": media_type})
    answered = headers.get("Docker-Content-Digest", _digest(document))
    if answered != _digest(document):
        raise BuildError(f"the registry stored {name}:{reference} as {answered}, not {_digest(document)}")


def check_push(client: Any, repository: str, registry: str, credentials: dict[str, str] | None) -> None:
    """The registry's API root asked with the credentials, authenticated for a push to `repository` as a push
    would be: RegistryError when the registry refuses them or cannot be reached. (A registry that lets anyone
    in but not push, Docker Hub's anonymous access, still refuses at the push itself.)"""
    session = Session(api_host(registry), is_secure(client, registry), credentials)
    session.request("GET", session.url("/v2/"), f"repository:{repository_path(repository, registry)}:push,pull")


def push(client: Any, images: list[tuple[Platform, str]], repository: str, registry: str, tags: list[str],
         credentials: dict[str, str] | None) -> Pushed:
    """Push the engine's images, one per platform, as repository:tag for each tag: one image as its manifest;
    several as an image index whose entries are their manifests, each pushed by its digest first."""
    session = Session(api_host(registry), is_secure(client, registry), credentials)
    name = repository_path(repository, registry)
    measured = report.measured_blobs()
    documents = []
    for platform, image in images:
        document, diff_ids = _push_image(session, name, client, image, measured)
        report.remember_pushed(diff_ids, f"{session.host}/{name}")
        documents.append((platform, document))
    manifests = {platform.name: _digest(document) for platform, document in documents}
    if len(documents) == 1:
        document, media_type = documents[0][1], MANIFEST_TYPE
    else:
        for _, entry in documents:
            _put_manifest(session, name, _digest(entry), entry, MANIFEST_TYPE)
        document, media_type = index(documents), INDEX_TYPE
    for tag in tags:
        _put_manifest(session, name, tag, document, media_type)
    return Pushed(f"{repository}@{_digest(document)}", media_type, manifests)
