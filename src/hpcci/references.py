"""Image references, one vocabulary (pure): registry host, repository, tag and digest are split apart here only.

A name's first component is a registry host when it looks like one (has a '.' or a ':', or is `localhost`) and
more components follow: distribution/reference's rule, the one Docker and every registry client apply.
Docker Hub answers to several host names; which ones, and the host its API lives on, is decided here as well.
https://github.com/distribution/reference/blob/main/normalize.go
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcci.errors import ConfigError

DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
DOCKER_HUB_API = "registry-1.docker.io"
# https://github.com/distribution/reference/blob/main/regexp.go (path components; the host may carry a port)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """``127.0.0.1:5000/org/app:1.0@sha256:...`` taken apart; empty strings for the parts it does not have."""

    host: str  # 127.0.0.1:5000, docker.io; "" when the name carries none
    path: str  # org/app
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """host/path, without tag or digest."""
        return f"{self.host}/{self.path}" if self.host else self.path


def parse_reference(text: str) -> Reference:
    """Split an image reference into registry host, repository path, tag and digest."""
    rest, _, digest = text.partition("@")
    first, slash, after = rest.partition("/")
    host = ""
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, after
    path, _, tag = rest.partition(":")  # with the host gone, a ':' can only start the tag
    return Reference(host=host, path=path, tag=tag, digest=digest)


def is_docker_hub(host: str) -> bool:
    return host in DOCKER_HUB


def normalize_repository(name: str) -> str:
    """Lowercase the repository (registries refuse upper case) and check it has a shape registries accept."""
    name = name.strip()
    if ":" in name.rsplit("/", 1)[-1] or "@" in name:
        raise ConfigError(
            f"image.name {name!r} must not carry a tag or digest; tags come from the tags rules"
        )
    ref = parse_reference(name)
    path = [p.lower() for p in ref.path.split("/")]
    bad = [p for p in path if not _PATH_COMPONENT.match(p)]
    if bad or (ref.host and not _HOST.match(ref.host)):
        what = repr(bad[0]) if bad else repr(ref.host or name)
        raise ConfigError(
            f"image.name {name!r}: {what} is not a valid repository component; use lowercase letters, "
            "digits and single '.', '_' or '-' separators, e.g. docker.io/org/app"
        )
    return "/".join([ref.host.lower(), *path] if ref.host else path)


@dataclass(frozen=True)
class Destination:
    """Where images go: registry host (as written in refs) and repository path."""

    host: str  # 127.0.0.1:5000, docker.io, ghcr.io
    repository: str  # octo-org/fibonacci
    insecure: bool = False

    @property
    def api(self) -> str:
        host = DOCKER_HUB_API if is_docker_hub(self.host) else self.host
        return f"{'http' if self.insecure else 'https'}://{host}"

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def ref(self, tag_or_digest: str) -> str:
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.name}{sep}{tag_or_digest}"


def destination(url: str, repository: str | None, image: str, *, insecure: bool) -> Destination:
    """From publish.registry: url (host) and repository (default: image.name without its registry host)."""
    host = re.sub(r"^https?://", "", url).rstrip("/")
    repository = (parse_reference(image).path if repository is None else repository).lower()
    if is_docker_hub(host) and "/" not in repository:
        repository = f"library/{repository}"
    return Destination(host=host.lower(), repository=repository, insecure=insecure)
