"""Layered test images and a layer-staging session on the local cluster, shared by test_layers.py and
benchmarks/bench_layers.py.

- ``write_archive``: a docker-archive tar (the `docker save` format) whose layers each hold one file of
  pseudo-random bytes from a seed, so two images share a layer exactly when they share its seed and size.
- ``Session``: a Deployer for cluster-configs/local.yaml with staging.layers on and its own image cache (its own
  blob store), and an S3 upload of a tar with its layer index as `hpcci publish` writes it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_support import cluster_config, login, make_project, on_login, unique

from hpcci.backends.builders.spec import RegistryAuth
from hpcci.backends.objectstore import S3Settings, make_store
from hpcci.backends.registry import RegistryClient
from hpcci.backends.schedulers import slurm
from hpcci.config_load import load_cluster, load_pipeline
from hpcci.digests import file_sha256
from hpcci.log import Log
from hpcci.process import run
from hpcci.records import S3Object
from hpcci.stages.execute import Deployer, Staged
from hpcci.stages.layers import (
    LayerIndex,
    index_archive,
    index_from_manifest,
    index_key,
    registry_blob_source,
)
from hpcci.stages.sources import ImageSource, docker_archive_info
from swift_cleanup import delete_keys

MiB = 1 << 20
REGISTRY = os.environ.get("HPCCI_REGISTRY", "127.0.0.1:5000")


def _layer(path: Path, seed: str, size: int) -> str:
    """A layer tar holding /data/<seed>.bin of ``size`` seeded random bytes; returns its sha256."""
    rng = random.Random(seed)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/{seed}.bin")
        info.size, info.mtime, info.mode = size, 1_700_000_000, 0o644
        chunk = 8 * MiB

        class Stream(io.RawIOBase):
            left = size

            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                n = min(len(b), self.left, chunk)
                b[:n] = rng.randbytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Stream(), chunk))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def write_archive(out: Path, layers: list[tuple[str, int]]) -> Path:
    """A docker-archive of ``layers`` ((seed, bytes) each, bottom first) for linux/amd64."""
    work = out.parent / f".{out.name}.layers"
    work.mkdir(parents=True, exist_ok=True)
    digests = [_layer(work / f"{i}.tar", seed, size) for i, (seed, size) in enumerate(layers)]
    config = {
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in digests]},
    }  # fmt: skip
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [f"hpcci-test/layers:{out.stem}"],
                 "Layers": [f"{d}/layer.tar" for d in digests]}]  # fmt: skip
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for i, d in enumerate(digests):
            tar.add(work / f"{i}.tar", arcname=f"{d}/layer.tar")
            (work / f"{i}.tar").unlink()
    work.rmdir()
    return out


@dataclass
class Session:
    """Layer staging of images to the local cluster, into a blob store of this session's own."""

    root: Path
    via: str  # sftp | s3
    limit_gib: float = 50
    layers: bool = True
    s3_endpoint: str | None = None  # the S3 endpoint as the login node reaches it, if not local.yaml's
    tests: tuple[dict[str, Any], ...] = ()  # smoke tests of the session's project (for `hpcci deploy`)

    def __post_init__(self) -> None:
        self.name = unique("layers")
        self.remote = login()
        home = on_login(self.remote, ["bash", "-c", 'echo "$SCRATCH"']).stdout.strip()
        self.cache = f"{home}/{self.name}/images"
        cfg = cluster_config(**{
            "paths.image_cache": self.cache, "staging.method": self.via, "staging.layers": self.layers,
            "staging.blob_store_gib": self.limit_gib,
        })  # fmt: skip
        if self.s3_endpoint:
            cfg["staging"]["s3_endpoint_url"] = self.s3_endpoint
        registry = {"url": REGISTRY, "username": {"env": "HPCCI_REGISTRY_USERNAME"},
                    "password": {"env": "HPCCI_REGISTRY_PASSWORD"}, "insecure": True}  # fmt: skip
        proj = self.project = make_project(
            self.root / self.name,
            list(self.tests),
            cluster=cfg,
            registry=registry if self.via == "registry" else None,
        )
        self.pipeline = load_pipeline(proj.root / "hpcci.yaml")
        self.cluster = load_cluster(proj.root / "cluster-configs" / "local.yaml")
        self.log: list[str] = []
        self.runs = 0
        self.s3_keys: list[str] = []  # deleted by close()

    def store(self) -> str:
        return f"{self.cache}/blobs/sha256"

    def s3_source(self, tar: Path) -> ImageSource:
        """The tar and its layer index in S3 under a key of this session's (what `hpcci publish --to s3` writes)."""
        digest, platform = docker_archive_info(tar)
        settings = self.s3_settings()
        store = make_store(settings)
        key = f"test-layers/{self.name}/{tar.stem}.tar"
        self.s3_keys += [key, index_key(key)]
        sha = file_sha256(tar)
        info = store.upload_file(tar, key, metadata={"sha256": sha}, log=Log(github=False))
        store.put_json(index_key(key), index_archive(tar).to_json())
        obj = S3Object(settings.bucket, key, info.size, sha, platform, digest, settings.endpoint_url)
        return ImageSource(platform, digest, tar_sha256=sha, size=info.size, s3=obj)

    def registry_source(self, tar: Path) -> ImageSource:
        """The tar pushed to the stack's registry by skopeo (gzip layers, as `docker push` makes them)."""
        _, platform = docker_archive_info(tar)
        auth = self.root / f"{self.name}-auth.json"
        user, password = os.environ["HPCCI_REGISTRY_USERNAME"], os.environ["HPCCI_REGISTRY_PASSWORD"]
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        auth.write_text(json.dumps({"auths": {REGISTRY: {"auth": token}}}))
        repo = f"{REGISTRY}/test-layers/{self.name}"
        digest_file = self.root / f"{self.name}-digest"
        try:
            run(["skopeo", "copy", "--quiet", "--authfile", str(auth), "--dest-tls-verify=false",
                 "--digestfile", str(digest_file), f"docker-archive:{tar}", f"docker://{repo}:{tar.stem}"],
                timeout=600)  # fmt: skip
        finally:
            auth.unlink()
        digest = digest_file.read_text().strip()
        return ImageSource(platform, digest, registry_ref=f"{repo}@{digest}")

    def index(self, source: ImageSource, tar: Path) -> LayerIndex:
        """The blobs a deploy of ``source`` needs: the tar's, or those its registry manifest names."""
        if source.registry_ref is None:
            return index_archive(tar)
        dest, digest = registry_blob_source(source.registry_ref, insecure=True)
        auth = RegistryAuth(
            REGISTRY, os.environ["HPCCI_REGISTRY_USERNAME"], os.environ["HPCCI_REGISTRY_PASSWORD"]
        )
        with RegistryClient(dest, auth) as client:
            return index_from_manifest(client.get(digest))

    def source(self, tar: Path) -> ImageSource:
        if self.via == "registry":
            return self.registry_source(tar)
        if self.via == "s3":
            return self.s3_source(tar)
        digest, platform = docker_archive_info(tar)
        return ImageSource(platform, digest, size=tar.stat().st_size, local_tar=str(tar))

    def deploy(self, source: ImageSource) -> Staged:
        """Stage and convert ``source`` (no test jobs), as `hpcci deploy` does before submitting them."""
        from hpcci.commands.deploy import presigner

        self.runs += 1
        d = Deployer(self.pipeline, self.cluster, self.remote, slurm, presign=presigner(self.pipeline, Log(github=False)),
                     info=self.log.append, run_id=f"{self.name}-{self.runs}")  # fmt: skip
        plan = d.plan({source.platform: source})
        d.setup(plan)
        return d.stage_image(plan.images[source.platform])

    def image_path(self, source: ImageSource) -> str:
        return f"{self.cache}/{source.key}.sif"

    def close(self) -> None:
        on_login(self.remote, ["rm", "-rf", "--", self.cache.rsplit("/", 1)[0]], timeout=300)
        self.remote.close()
        if self.s3_keys:
            delete_keys(self.s3_settings().bucket, self.s3_keys)  # their multipart segments too

    def s3_settings(self) -> S3Settings:
        return S3Settings(bucket=os.environ.get("HPCCI_S3_BUCKET", "hpcci"), path_style=True,
                          endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))  # fmt: skip
