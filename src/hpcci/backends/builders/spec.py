"""What one build is: the BuildSpec every builder takes, the BuiltImage it returns, and the flags they share.

Pure: nothing here runs or reads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hpcci.errors import PlatformError
from hpcci.platforms import platform_tag, split_platform


@dataclass(frozen=True)
class RegistryAuth:
    """One registry host a build talks to: its credentials (when it needs them) and whether it is plain HTTP."""

    host: str
    username: str | None = None
    password: str | None = None
    insecure: bool = False

    @property
    def has_login(self) -> bool:
        return bool(self.username and self.password)


@dataclass(frozen=True)
class BuildSpec:
    """One multi-arch build: what to build and how to name the per-platform results."""

    context: Path
    dockerfile: Path  # absolute, or relative to the context
    platforms: list[str]
    repository: str  # lowercased, e.g. 127.0.0.1:5000/octo-org/fibonacci
    tag: str  # the main tag; per-platform local tags derive from it
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    cache: bool = True
    auths: list[RegistryAuth] = field(default_factory=list)
    timeout: float = 3600.0
    # earlier pushes to import layer cache from (buildx; `repo:tag`, the platform suffix is added per build):
    # a fresh runner (GitHub-hosted) has no local cache, the registry does
    cache_from: list[str] = field(default_factory=list)

    @property
    def dockerfile_path(self) -> Path:
        return self.dockerfile if self.dockerfile.is_absolute() else self.context / self.dockerfile

    def ref(self, platform: str) -> str:
        return f"{self.repository}:{platform_tag(self.tag, platform)}"

    def args_for(self, platform: str) -> dict[str, str]:
        """Build args with the TARGET* values BuildKit would set (the legacy builder does not set them)."""
        os_, arch, variant = split_platform(platform)
        auto = {"TARGETPLATFORM": platform, "TARGETOS": os_, "TARGETARCH": arch, "TARGETVARIANT": variant}
        return {**auto, **self.build_args}


@dataclass(frozen=True)
class BuiltImage:
    platform: str
    ref: str  # the local per-platform reference
    image_id: str  # sha256:<config digest>
    size: int = 0


def labels_argv(labels: dict[str, str]) -> list[str]:
    return [a for k, v in sorted(labels.items()) for a in ("--label", f"{k}={v}")]


def build_args_argv(args: dict[str, str]) -> list[str]:
    return [a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")]


def check_arch(image_arch: str, image_variant: str, platform: str, *, builder: str, ref: str) -> None:
    """The built image must say the architecture asked for (the legacy builder silently takes the base's)."""
    _, arch, variant = split_platform(platform)
    if image_arch == arch and (not variant or not image_variant or image_variant == variant):
        return
    got = f"{image_arch}/{image_variant}" if image_variant else image_arch
    raise PlatformError(
        f"{builder}: built {ref} for {platform} but the image says architecture {got}: the base image has no "
        f"{platform} variant (or the builder ignored the platform); use a multi-arch base image"
    )
