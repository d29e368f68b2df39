"""Registry seam: push per-platform images, then put ONE manifest list on every tag.

Platform images go up with the tool that holds them (the Docker SDK for the docker/buildx builders, `buildah push`
for buildah). The list itself is written here over the Distribution HTTP API (the protocol Docker Hub, GHCR, ECR,
Harbor and the CNCF registry all speak), from a deterministic JSON body: so its digest is known before the PUT and
a tag that already points at it is left alone (re-publishing is a no-op).

The Docker SDK reports some push failures only inside its JSON stream (``{"error": ...}``) without raising:
every chunk is checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpcci import process
from hpcci.backends.builders.credentials import authfile
from hpcci.backends.builders.docker import docker_client
from hpcci.backends.builders.spec import RegistryAuth
from hpcci.errors import RegistryAuthError, RegistryError
from hpcci.log import Log
from hpcci.platforms import platform_tag, split_platform
from hpcci.references import Destination, parse_reference

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([DOCKER_LIST, OCI_INDEX, DOCKER_MANIFEST, OCI_MANIFEST])


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int


@dataclass
class PushResult:
    digest: str  # the list's digest
    platforms: dict[str, str]  # platform -> manifest digest
    refs: list[str]
    changed: list[str] = field(default_factory=list)  # tags the list was written to
    unchanged: list[str] = field(default_factory=list)  # tags already pointing at it
    pushed_images: list[str] = field(default_factory=list)  # platform images pushed
    kept_images: list[str] = field(default_factory=list)  # platform images already there


def manifest_list(entries: list[tuple[str, ManifestInfo]]) -> tuple[bytes, str]:
    """The list body (deterministic bytes) and its media type: Docker list for Docker manifests, else OCI index."""
    all_docker = all(m.media_type == DOCKER_MANIFEST for _, m in entries)
    media = DOCKER_LIST if all_docker else OCI_INDEX
    manifests = []
    for platform, m in entries:
        os_, arch, variant = split_platform(platform)
        plat = {"architecture": arch, "os": os_, **({"variant": variant} if variant else {})}
        manifests.append({"mediaType": m.media_type, "size": m.size, "digest": m.digest, "platform": plat})
    body = {"schemaVersion": 2, "mediaType": media, "manifests": manifests}
    return json.dumps(body, indent=3).encode(), media


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


# -- the Distribution API ----------------------------------------------------------------------------------------


class RegistryClient:
    """A small client for /v2/ manifests and blobs: Basic or Bearer-token auth, clear errors."""

    def __init__(self, dest: Destination, auth: RegistryAuth | None, *, timeout: float = 60) -> None:
        import httpx

        self.dest = dest
        self.auth = auth
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._authz: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Any:
        import httpx

        url = f"{self.dest.api}/v2/{self.dest.repository}/{path}"
        for attempt in range(2):
            h = dict(headers or {})
            if self._authz:
                h["Authorization"] = self._authz
            try:
                resp = self._http.request(method, url, headers=h, content=body)
            except httpx.HTTPError as e:
                raise RegistryError(
                    f"cannot reach registry {self.dest.api}: {type(e).__name__}: {str(e)[:200]}; "
                    "check publish.registry.url (and `insecure` for a plain-http registry)",
                    transient=True,
                ) from e
            if resp.status_code == 401 and attempt == 0:
                self._authz = self._authorize(resp.headers.get("www-authenticate", ""))
                continue
            return resp
        raise RegistryAuthError(self._denied())

    @property
    def authorization(self) -> str | None:
        """The Authorization header value the registry granted (Basic or Bearer), for a blob fetch elsewhere."""
        return self._authz

    def _denied(self) -> str:
        who = f"user {self.auth.username!r}" if self.auth else "anonymous access"
        return (
            f"registry {self.dest.host} refused {who} for {self.dest.repository}: check the registry username "
            "and password/token (publish.registry in hpcci.yaml, or HPCCI_REGISTRY_USERNAME/PASSWORD)"
        )

    def _authorize(self, challenge: str) -> str:
        import base64

        import httpx

        if not self.auth:
            raise RegistryAuthError(self._denied())
        basic = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            return f"Basic {basic}"
        if scheme.lower() != "bearer":
            raise RegistryError(f"registry {self.dest.host} asks for unsupported auth {scheme!r}")
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": attrs.get("service", ""), "scope": f"repository:{self.dest.repository}:pull,push"}
        try:
            resp = self._http.get(attrs["realm"], params=query, headers={"Authorization": f"Basic {basic}"})
        except (KeyError, httpx.HTTPError) as e:
            raise RegistryError(f"registry {self.dest.host}: token service failed: {str(e)[:200]}") from e
        if resp.status_code in (401, 403):
            raise RegistryAuthError(self._denied())
        token = (resp.json() or {}).get("token") or (resp.json() or {}).get("access_token")
        if not token:
            raise RegistryError(
                f"registry {self.dest.host}: token service answered {resp.status_code} without token"
            )
        return f"Bearer {token}"

    def _fail(self, resp: Any, what: str) -> RegistryError:
        if resp.status_code in (401, 403):
            return RegistryAuthError(self._denied())
        try:
            detail = "; ".join(str(e.get("message", e)) for e in resp.json().get("errors", []))
        except ValueError:
            detail = resp.text[:200]
        return RegistryError(
            f"registry {self.dest.host}: {what} failed: HTTP {resp.status_code} {detail}".strip()
        )

    def head(self, tag_or_digest: str) -> ManifestInfo | None:
        """The manifest a tag or digest points at, or None when there is none."""
        resp = self._request("HEAD", f"manifests/{tag_or_digest}", headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"looking up {self.dest.ref(tag_or_digest)}")
        return ManifestInfo(
            digest=resp.headers.get("docker-content-digest", ""),
            media_type=resp.headers.get("content-type", "").split(";")[0],
            size=int(resp.headers.get("content-length") or 0),
        )

    def get(self, tag_or_digest: str) -> dict[str, Any]:
        resp = self._request("GET", f"manifests/{tag_or_digest}", headers={"Accept": ACCEPT})
        if resp.status_code != 200:
            raise self._fail(resp, f"reading {self.dest.ref(tag_or_digest)}")
        data: dict[str, Any] = resp.json()
        return data

    def put(self, tag: str, body: bytes, media_type: str) -> str:
        resp = self._request("PUT", f"manifests/{tag}", headers={"Content-Type": media_type}, body=body)
        if resp.status_code not in (200, 201):
            raise self._fail(resp, f"writing {self.dest.ref(tag)}")
        return str(resp.headers.get("docker-content-digest") or digest_of(body))

    def blob_json(self, digest: str) -> dict[str, Any]:
        resp = self._request("GET", f"blobs/{digest}")
        if resp.status_code != 200:
            raise self._fail(resp, f"reading blob {digest}")
        data: dict[str, Any] = resp.json()
        return data

    def platforms(self, tag_or_digest: str) -> dict[str, str]:
        """platform -> manifest digest, as the registry reports the list (os/arch[/variant])."""
        data = self.get(tag_or_digest)
        out = {}
        for m in data.get("manifests", []):
            p = m.get("platform", {})
            name = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
            out[name] = m["digest"]
        return out

    def architecture(self, digest: str) -> str:
        """The architecture a platform manifest's image config says (what a runtime pulling it will get)."""
        config = self.get(digest).get("config", {}).get("digest", "")
        data = self.blob_json(config)
        return str(data.get("architecture", ""))


# -- pushing platform images -------------------------------------------------------------------------------------


class ImagePusher(Protocol):
    def push(self, local_ref: str, dest_ref: str, auth: RegistryAuth | None) -> str:
        """Push one platform image; return its manifest digest in the registry."""

    def pushed_digests(self, local_ref: str, dest_name: str) -> list[str]:
        """Digests under which this image was already pushed to ``dest_name`` (may be empty)."""


class DockerPusher:
    """Images in the Docker engine (docker, buildx builders), pushed with the SDK."""

    def pushed_digests(self, local_ref: str, dest_name: str) -> list[str]:
        from docker.errors import DockerException

        try:
            repo_digests = docker_client().api.inspect_image(local_ref).get("RepoDigests") or []
        except DockerException:
            return []
        refs = [parse_reference(d) for d in repo_digests]
        return [r.digest for r in refs if r.repository == dest_name]

    def push(self, local_ref: str, dest_ref: str, auth: RegistryAuth | None) -> str:
        from docker.errors import APIError, DockerException

        client = docker_client(timeout=3600)
        ref = parse_reference(dest_ref)
        repo, tag = ref.repository, ref.tag
        auth_config = {"username": auth.username, "password": auth.password} if auth else None
        try:
            client.api.tag(local_ref, repo, tag)
            digest = ""
            for chunk in client.api.push(repo, tag=tag, auth_config=auth_config, stream=True, decode=True):
                if "error" in chunk:  # the SDK does not raise for these
                    raise _push_error(
                        dest_ref, str(chunk.get("errorDetail", {}).get("message") or chunk["error"])
                    )
                digest = chunk.get("aux", {}).get("Digest", digest)
        except APIError as e:
            raise _push_error(dest_ref, str(e.explanation or e)) from e
        except DockerException as e:
            raise RegistryError(f"push {dest_ref}: the Docker engine failed: {str(e)[:300]}") from e
        if not digest:
            raise RegistryError(f"push {dest_ref}: the Docker engine reported no digest; see its log")
        return str(digest)


def _push_error(ref: str, message: str) -> RegistryError:
    low = message.lower()
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        return RegistryAuthError(
            f"push {ref} refused: {message.strip()[:200]}; check the registry username and password/token"
        )
    return RegistryError(f"push {ref} failed: {message.strip()[:300]}")


class BuildahPusher:
    """Images in containers-storage (buildah builder), pushed with `buildah push` as Docker v2s2 manifests."""

    def __init__(self, insecure: bool = False) -> None:
        self.insecure = insecure

    def pushed_digests(self, local_ref: str, dest_name: str) -> list[str]:
        return []  # containers-storage keeps no record of pushes; `buildah push` skips existing blobs itself

    def push(self, local_ref: str, dest_ref: str, auth: RegistryAuth | None) -> str:
        import tempfile
        from pathlib import Path

        with authfile([auth] if auth else []) as af, tempfile.TemporaryDirectory(prefix="hpcci-push-") as d:
            digestfile = Path(d) / "digest"
            done = process.run(
                buildah_push_argv(
                    local_ref, dest_ref, authfile=af, digestfile=str(digestfile), insecure=self.insecure
                ),
                timeout=3600,
                check=False,
                error=RegistryError,
            )
            if not done.ok:
                raise _push_error(dest_ref, process.tail(done.stdout + done.stderr, lines=2))
            return digestfile.read_text(encoding="utf-8").strip()


def buildah_push_argv(
    local_ref: str, dest_ref: str, *, authfile: str | None, digestfile: str, insecure: bool
) -> list[str]:
    argv = ["buildah", "push", "--format", "v2s2", "--digestfile", digestfile]
    if authfile:
        argv += ["--authfile", authfile]
    if insecure:
        argv.append("--tls-verify=false")
    return [*argv, local_ref, f"docker://{dest_ref}"]


def pusher_for(builder: str, *, insecure: bool) -> ImagePusher:
    return BuildahPusher(insecure=insecure) if builder == "buildah" else DockerPusher()


# -- the whole publication ---------------------------------------------------------------------------------------


def publish(
    dest: Destination,
    auth: RegistryAuth | None,
    images: list[tuple[str, str]],  # (platform, local ref)
    tags: list[str],
    pusher: ImagePusher,
    log: Log,
) -> PushResult:
    """Push each platform image, then write the list to every tag that does not already point at it."""
    with RegistryClient(dest, auth) as client:
        client.head(tags[0])  # fails early and clearly on bad credentials or a wrong URL
        result = PushResult(digest="", platforms={}, refs=[dest.ref(t) for t in tags])
        entries: list[tuple[str, ManifestInfo]] = []
        for platform, local_ref in images:
            ptag = platform_tag(tags[0], platform)
            digest = _already_pushed(client, pusher, local_ref, dest, ptag)
            if digest:
                result.kept_images.append(dest.ref(ptag))
            else:
                digest = pusher.push(local_ref, dest.ref(ptag), auth)
                result.pushed_images.append(dest.ref(ptag))
            info = client.head(digest)
            if info is None:
                raise RegistryError(f"pushed {dest.ref(ptag)} but the registry does not have {digest}")
            _check_pushed_arch(client, platform, digest, dest)
            result.platforms[platform] = digest
            entries.append((platform, info))
            log.info(f"{platform}: {dest.ref(ptag)} -> {digest}")
        body, media = manifest_list(entries)
        result.digest = digest_of(body)
        for tag in tags:
            current = client.head(tag)
            if current is not None and current.digest == result.digest:
                result.unchanged.append(tag)
                continue
            client.put(tag, body, media)
            result.changed.append(tag)
        return result


def _already_pushed(
    client: RegistryClient, pusher: ImagePusher, local_ref: str, dest: Destination, ptag: str
) -> str | None:
    """The digest when the platform tag already points at this very image (nothing to push)."""
    current = client.head(ptag)
    if current is None:
        return None
    return current.digest if current.digest in pusher.pushed_digests(local_ref, dest.name) else None


def _check_pushed_arch(client: RegistryClient, platform: str, digest: str, dest: Destination) -> None:
    _, arch, _ = split_platform(platform)
    got = client.architecture(digest)
    if got != arch:
        raise RegistryError(
            f"{dest.ref(digest)} is for {got}, not {platform}: refusing to list it under {platform}; rebuild"
        )
