"""The publish stage: the built images to a registry (a multi-arch list) and/or to S3 (docker-archive tars).

Backends come in as arguments; no SDK imports here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hpcci.backends.engine import platform_key, platform_tag
from hpcci.log import Log
from hpcci.records import BuildRecord, PublishRecord, RegistryPublication, S3Object

if TYPE_CHECKING:
    from hpcci.backends.engine import RegistryAuth
    from hpcci.backends.registry import Destination, ImagePusher, PushResult


def s3_key(prefix: str, repository: str, digest: str, platform: str) -> str:
    """Content-addressed: prefix/<image path>/<algo>-<hex>/<os-arch>.tar (the image id pins the content)."""
    return f"{_image_path(prefix, repository)}/{digest.replace(':', '-')}/{platform_key(platform)}.tar"


def s3_index_key(prefix: str, repository: str) -> str:
    """The index object: which digest and key each tag points at."""
    return f"{_image_path(prefix, repository)}/index.json"


def _image_path(prefix: str, repository: str) -> str:
    parts = repository.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # the registry host is not part of the image's identity in S3
    return "/".join(p for p in [prefix.strip("/"), *parts] if p)


def publish_registry(
    build: BuildRecord,
    dest: Destination,
    auth: RegistryAuth | None,
    pusher: ImagePusher,
    log: Log,
) -> tuple[RegistryPublication, PushResult]:
    from hpcci.backends.registry import publish

    images = [(p.platform, p.ref) for p in build.platforms]
    with log.step(f"push {dest.name} ({', '.join(build.tags)})"):
        result = publish(dest, auth, images, build.tags, pusher, platform_tag=platform_tag, log=log)
        if result.changed:
            log.info(f"manifest list {result.digest} written to: {', '.join(result.changed)}")
        if result.unchanged:
            log.info(f"already at {result.digest} (nothing to do): {', '.join(result.unchanged)}")
    return RegistryPublication(refs=result.refs, digest=result.digest, platforms=result.platforms), result


@dataclass
class S3Result:
    objects: list[S3Object] = field(default_factory=list)
    index_key: str | None = None
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def merge(old: PublishRecord | None, new: PublishRecord) -> PublishRecord:
    """Publishing to one target keeps what an earlier run published for the same image and tags elsewhere."""
    if old is None or old.image != new.image or old.tags != new.tags:
        return new
    return PublishRecord(
        image=new.image,
        tags=new.tags,
        registry=new.registry or old.registry,
        s3=new.s3 or old.s3,
        s3_index_key=new.s3_index_key or old.s3_index_key,
    )
