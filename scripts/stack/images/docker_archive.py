#!/usr/bin/env python3
"""Write a one-layer docker-archive (the `docker save` format) to stdout, for `docker load`.

    docker_archive.py ROOTFS.tar ARCH NAME:TAG | docker load

The layer is ROOTFS.tar as it is (an uncompressed tar), and the image config carries the right
architecture (and variant v8 for arm64): `docker import --platform` on dockerd 20.10 ignores the platform,
so the config is written by hand here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import time

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    tar.addfile(info, io.BytesIO(data))


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    rootfs, arch, ref = argv[1:]
    mtime = os.stat(rootfs).st_mtime
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    layer_id = sha256_file(rootfs)
    config: dict[str, object] = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "Env": [f"PATH={PATH}"],
            "Cmd": ["bash"],
            "Labels": {
                "org.opencontainers.image.description": "hpcci local base: Debian bookworm minbase + python3-minimal"
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [
            {
                "created": created,
                "created_by": f"scripts/stack/images/rootfs.sh {arch} (mmdebstrap minbase bookworm)",
            }
        ],
    }
    if arch == "arm64":
        config["variant"] = "v8"
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_id}/layer.tar"]}]
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, config_name, config_bytes, mtime)
        tar.add(rootfs, arcname=f"{layer_id}/layer.tar")
        add_bytes(tar, "manifest.json", json.dumps(manifest).encode(), mtime)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
