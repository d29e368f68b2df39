"""The publish stage: the built images to a registry (a multi-arch list) and/or to S3 (docker-archive tars).

Backends come in as arguments; no SDK imports here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcci.errors import UsageError
from hpcci.log import Log
from hpcci.platforms import platform_key
from hpcci.records import BuildRecord, PublishRecord, RegistryPublication, S3Object
from hpcci.references import parse_reference
from hpcci.stages.layers import index as layers

if TYPE_CHECKING:
    from hpcci.backends.builders import Builder
    from hpcci.backends.builders.spec import RegistryAuth
    from hpcci.backends.registry import ImagePusher, PushResult
    from hpcci.backends.s3.store import ObjectStore
    from hpcci.references import Destination


def s3_key(prefix: str, repository: str, digest: str, platform: str) -> str:
    """Content-addressed: prefix/<image path>/<algo>-<hex>/<os-arch>.tar (the image id pins the content)."""
    return f"{_image_path(prefix, repository)}/{digest.replace(':', '-')}/{platform_key(platform)}.tar"


def s3_index_key(prefix: str, repository: str) -> str:
    """The index object: which digest and key each tag points at."""
    return f"{_image_path(prefix, repository)}/index.json"


def _image_path(prefix: str, repository: str) -> str:
    # the registry host is not part of the image's identity in S3
    parts = parse_reference(repository).path.split("/")
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
        result = publish(dest, auth, images, build.tags, pusher, log)
        if result.kept_images:
            log.info(f"already in the registry, not pushed again: {', '.join(result.kept_images)}")
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


def publish_s3(
    build: BuildRecord,
    store: ObjectStore,
    exporter: Builder,
    log: Log,
    *,
    prefix: str,
    workdir: Path,
    manifest_digest: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> S3Result:
    """One docker-archive tar per platform under a content-addressed key, then the tags -> keys index.

    A key whose object already carries the same image digest and a sha256 is not uploaded again.
    """
    from hpcci.backends.builders.spec import BuiltImage
    from hpcci.backends.s3.store import IMAGE_META, PLATFORM_META, SHA256_META

    store.check_bucket()
    result = S3Result(index_key=s3_index_key(prefix, build.image))
    for image in build.platforms:
        key = s3_key(prefix, build.image, image.digest, image.platform)
        existing = store.head(key)
        same = bool(existing and existing.sha256 and existing.metadata.get(IMAGE_META) == image.digest)
        if existing and existing.sha256 and same and store.head(layers.index_key(key)):
            log.info(
                f"{image.platform}: s3://{store.bucket}/{key} is already there (sha256 {existing.sha256[:12]})"
            )
            result.skipped.append(key)
            sha, size = existing.sha256, existing.size
        else:
            what = "index the layers of" if same else "upload"
            with log.step(f"{what} {image.platform} -> s3://{store.bucket}/{key}"):
                if not exporter.exists(image.ref):
                    raise UsageError(
                        f"{image.ref} is not in this machine's {exporter.name} image store: run `hpcci build` in "
                        "the same job (or runner) before `hpcci publish --to s3`"
                    )
                tar = workdir / f"{platform_key(image.platform)}.tar"
                archive = exporter.export(
                    BuiltImage(image.platform, image.ref, image.digest, image.size), tar
                )
                log.info(f"exported {image.ref}: {archive.size / (1 << 20):.0f} MiB, sha256 {archive.sha256}")
                try:
                    meta = {
                        SHA256_META: archive.sha256,
                        IMAGE_META: image.digest,
                        PLATFORM_META: image.platform,
                    }
                    if not same:
                        store.upload_file(archive.path, key, metadata=meta, log=log)
                    # byte ranges of the tar by digest: a cluster pulls only the layers it lacks (staging.layers)
                    store.put_json(layers.index_key(key), layers.index_archive(archive.path).to_json())
                finally:
                    archive.path.unlink(missing_ok=True)
            (result.skipped if same else result.uploaded).append(key)
            sha, size = archive.sha256, archive.size
        result.objects.append(
            S3Object(store.bucket, key, size, sha, image.platform, image.digest, endpoint_url, region)
        )
    index_key = result.index_key or ""
    old = store.get_json(index_key)
    index = update_index(copy.deepcopy(old), build, result.objects, manifest_digest)
    if index == old:
        log.info(
            f"index s3://{store.bucket}/{index_key} already lists {', '.join(build.tags)} (nothing to do)"
        )
    else:
        store.put_json(index_key, index)
        log.info(f"index s3://{store.bucket}/{index_key}: {', '.join(build.tags)}")
    return result


def update_index(
    old: dict[str, Any] | None, build: BuildRecord, objects: list[S3Object], manifest_digest: str | None
) -> dict[str, Any]:
    """The index object: every tag -> the image digests, keys and checksums it points at (other tags kept)."""
    index: dict[str, Any] = old if old and isinstance(old.get("tags"), dict) else {"tags": {}}
    index["image"] = build.image
    index["schema"] = 1
    entry = {
        "manifest_digest": manifest_digest,
        "source_sha": build.source_sha,
        "created": build.created,
        "platforms": {
            o.platform: {"digest": o.digest, "key": o.key, "sha256": o.sha256, "size": o.size}
            for o in objects
        },
    }
    for tag in build.tags:
        index["tags"][tag] = entry
    return index
