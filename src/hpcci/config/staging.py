"""The cluster config's staging section: how images reach a cluster, and the bound of its layer blob store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hpcci.config.types import ConfigModel


class StagingConfig(ConfigModel):
    method: Literal["auto", "s3", "sftp", "registry"] = "auto"
    streams: int = Field(4, ge=1, le=32)
    s3_endpoint_url: str | None = Field(
        None,
        description="The S3 endpoint as the login node reaches it, when it differs from publish.s3.endpoint_url "
        "(presigned URLs are signed for this host)",
    )
    layers: bool = Field(
        False,
        description="Stage layer by layer: the cluster keeps a content-addressed blob store under paths.image_cache "
        "and receives only the blobs it lacks (S3 and SFTP staging, apptainer/singularity, not login.mode "
        "automation); off: the whole docker-archive tar each time the image changes",
    )
    blob_store_gib: float = Field(
        50,
        gt=0,
        description="Size limit of the blob store (GiB): least recently used blobs beyond it are deleted, never "
        "those of the image being deployed or listed in <image_cache>/blobs/keep",
    )
