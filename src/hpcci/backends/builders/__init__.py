"""Image builders, one seam: the Builder Protocol, the table of builders by name, and the `auto` choice.

Every builder builds ONE platform per call into its local image store, under a per-platform local tag
(``repo:1.2.3-arm64``); the registry backend pushes those and assembles the multi-arch list itself, so the
builders behave the same from the outside and the build log can be grouped per platform.

- buildx.py: docker buildx (GitHub-hosted runners), BuildKit's cache.
- buildah.py: buildah (daemonless, self-hosted and HPC-side runners), its layer cache.
- docker.py: the plain Docker engine's legacy builder through the SDK, and the engine's image store.

Command lines are built by pure functions (``*_argv``) so `hpcci plan` can print them; they run through
hpcci.process. A new builder is one module plus one entry in BUILDERS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hpcci.backends.builders.archive import Archive
from hpcci.backends.builders.buildah import BuildahBuilder
from hpcci.backends.builders.buildx import BuildxBuilder
from hpcci.backends.builders.docker import DockerBuilder
from hpcci.backends.builders.spec import BuildSpec, BuiltImage
from hpcci.errors import BuildError, UsageError
from hpcci.log import Log


class Builder(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """None when this builder can run here, else why not (one line)."""

    def argv(self, spec: BuildSpec, platform: str) -> list[str]:
        """The build command for one platform as `hpcci plan` prints it: temporary files under $TMP, and for
        the SDK builder the equivalent CLI line."""

    def build(self, spec: BuildSpec, platform: str, log: Log) -> BuiltImage:
        """Build one platform, streaming its log; check the result's architecture."""

    def export(self, image: BuiltImage, dest: Path) -> Archive:
        """Write a docker-archive tar (what `docker load` and `apptainer build x.sif docker-archive://x` read)."""

    def exists(self, ref: str) -> bool:
        """Whether ``ref`` is in this builder's local image store."""


# In the order `auto` tries them.
BUILDERS: dict[str, Callable[[], Builder]] = {
    "buildx": BuildxBuilder,
    "buildah": BuildahBuilder,
    "docker": DockerBuilder,
}


def get_builder(name: str) -> Builder:
    try:
        return BUILDERS[name]()
    except KeyError:
        raise UsageError(f"unknown builder {name!r}; choose one of: auto, {', '.join(BUILDERS)}") from None


def pick_builder(wanted: str, log: Log | None = None) -> Builder:
    """``wanted`` is auto or a name in BUILDERS; auto takes the first that works here (buildx, buildah, docker)."""
    if wanted != "auto":
        builder = get_builder(wanted)
        why = builder.unavailable()
        if why:
            raise BuildError(f"builder {wanted!r} cannot run here: {why}; or set image.builder: auto")
        return builder
    reasons: list[str] = []
    for name in BUILDERS:
        builder = get_builder(name)
        why = builder.unavailable()
        if why is None:
            if log:
                log.info(f"builder: {name} (auto; {'; '.join(reasons) or 'first choice'})")
            return builder
        reasons.append(f"{name}: {why}")
    raise BuildError("no image builder works on this machine: " + "; ".join(reasons))
