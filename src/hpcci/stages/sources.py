"""Image sources: what a deploy stages per platform, from the publish record or a local `docker save` tar."""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from hpcci.errors import UsageError
from hpcci.platforms import image_platform
from hpcci.records import PublishRecord, S3Object
from hpcci.references import parse_reference


@dataclass(frozen=True)
class ImageSource:
    """One platform's image and every place it can be fetched from."""

    platform: str
    digest: str  # sha256:... - the content key of the cache
    tar_sha256: str | None = None
    size: int = 0
    s3: S3Object | None = None
    local_tar: str | None = None
    registry_ref: str | None = None  # repo@sha256:... for `apptainer pull docker://`

    @property
    def key(self) -> str:
        return self.digest.removeprefix("sha256:")


def sources_from_publish(record: PublishRecord) -> dict[str, ImageSource]:
    """Per platform, where the published image can be fetched from (S3 tar and/or registry)."""
    out: dict[str, ImageSource] = {}
    for obj in record.s3:
        out[obj.platform] = ImageSource(
            platform=obj.platform,
            digest=obj.digest or f"sha256:{obj.sha256}",
            tar_sha256=obj.sha256,
            size=obj.size,
            s3=obj,
        )
    reg = record.registry
    if reg is not None and reg.refs:
        repo = parse_reference(reg.refs[0]).repository
        for platform, digest in reg.platforms.items():
            src = out.get(platform) or ImageSource(platform=platform, digest=digest)
            out[platform] = replace(src, registry_ref=f"{repo}@{digest}")
    return out


def docker_archive_info(path: Path) -> tuple[str, str]:
    """(image id 'sha256:...', platform) of a `docker save` tar: the id is its config digest, stable across saves."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.load(member)
            config_name = manifest[0]["Config"]
            cfg_member = tar.extractfile(config_name)
            config = json.load(cfg_member) if cfg_member else {}
    except (OSError, KeyError, IndexError, ValueError, tarfile.TarError) as e:
        raise UsageError(
            f"{path}: not a docker-archive tar ({e}); make one with `docker save IMAGE -o FILE.tar`"
        ) from e
    hexdigest = re.search(r"[0-9a-f]{64}", config_name)
    if not hexdigest:
        raise UsageError(f"{path}: manifest.json names no config digest; make the tar with `docker save`")
    arch = str(config.get("architecture", "amd64"))
    variant = config.get("variant")
    platform = image_platform(arch, str(variant) if variant else None)
    return f"sha256:{hexdigest.group(0)}", platform
