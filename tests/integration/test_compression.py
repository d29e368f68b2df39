"""runtime.compression auto on the local cluster, both branches: the stand-in is Apptainer 1.4.1 (takes
`build --mksquashfs-args`: zstd) or 1.3.6 (does not: gzip, and the option would be refused) as its module says.

Each deploy converts into an image cache of its own, so the conversion really runs; the SIF's own superblock says
which compressor packed it (SquashFS 4.0 superblock: the compression id is the 16-bit little-endian word at byte
20; 1 gzip, 6 zstd - squashfs-tools' squashfs_fs.h).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from deploy_support import Project, cluster_config, hpcci, login, on_login, unique
from test_doctor import doctor

from hpcci.backends.runtime import ZSTD_LEVEL

FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip
COMPRESSOR = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}


def sif_compressor(path: str) -> str:
    """The compressor named in the SquashFS superblock of the image at ``path`` on the cluster."""
    remote = login()
    try:
        word = on_login(remote, ["od", "-An", "-tu2", "--endian=little", "-j20", "-N2", "--", path]).stdout
    finally:
        remote.close()
    return COMPRESSOR.get(int(word), word.strip())


@pytest.mark.parametrize(
    ("module", "version", "compressor", "packed"),
    [
        ("apptainer/1.4.1-standin", "1.4.1+hpcci-standin", "zstd", f"-comp zstd -Xcompression-level {ZSTD_LEVEL}"),
        ("apptainer/1.3.6-standin", "1.3.6+hpcci-standin", "gzip", "gzip"),
    ],
)  # fmt: skip
def test_auto_packs_zstd_on_apptainer_1_4_and_gzip_before(
    fib_tar: Path, project: Callable[..., Project], module: str, version: str, compressor: str, packed: str
) -> None:
    cache = f"$SCRATCH/{unique('compression-cache')}"
    config = cluster_config(
        **{"runtime.compression": "auto", "runtime.modules": [module], "paths.image_cache": cache}
    )
    proj = project([FIB], cluster=config)
    try:
        done = hpcci(proj, "deploy", "--image-tar", str(fib_tar))
        out = done.stdout + done.stderr
        assert done.returncode == 0 and proj.tests()["fib"]["verdict"] == "pass", out[-3000:]
        (deployed,) = proj.deploy_record()["clusters"]
        assert (deployed["runtime_version"], deployed["compression"]) == (version, packed)
        assert "image packing: auto: " in out
        assert not deployed["cache_hit"] and sif_compressor(deployed["sif_path"]) == compressor
        plan = hpcci(proj, "plan", "--only", "deploy")  # reads the version the deploy kept
        assert f"{version} is the last deploy's" in plan.stdout, plan.stdout + plan.stderr
    finally:
        remote = login()
        try:
            on_login(remote, ["bash", "-c", 'rm -rf -- "$SCRATCH/$1"', "_", cache.removeprefix("$SCRATCH/")])
        finally:
            remote.close()


def test_doctor_says_which_compression_for_each_version(tmp_path: Path, require: Callable[..., None]) -> None:
    require("cluster")
    new = doctor(
        tmp_path, cluster_config(**{"runtime.compression": "auto"})
    )  # `module load apptainer`: 1.4.1
    assert new.returncode == 0, new.stdout + new.stderr
    assert "ok    compression    auto: zstd level" in new.stdout and "1.4.1+hpcci-standin takes" in new.stdout
    old = cluster_config(**{"runtime.compression": "auto", "runtime.modules": ["apptainer/1.3.6-standin"]})
    done = doctor(tmp_path, old)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "auto: gzip (the runtime's default), apptainer 1.3.6+hpcci-standin takes no" in done.stdout
    named = cluster_config(**{"runtime.compression": "zstd", "runtime.modules": ["apptainer/1.3.6-standin"]})
    done = doctor(tmp_path, named)
    assert done.returncode == 2, done.stdout + done.stderr  # the ConfigError a deploy would stop with
    assert "FAIL  compression" in done.stdout and "set runtime.compression to auto or gzip" in done.stdout
