"""Layer-level staging, side by side in one run (issue 13, benchmark a), printed as a Markdown table.

A 1 GiB image (four 255 MiB layers and a 1 MiB top layer), then a new commit that changes only the 1 MiB layer.
For each staging path (SFTP upload, login node pulling from S3) the second image is deployed two ways on the local
cluster, stage + convert as `hpcci deploy` does before it submits jobs:
- full: the whole docker-archive tar staged (staging.layers off), then converted - what a changed digest cost before;
- layers: into a blob store that already holds the first image's blobs (staging.layers on) - only the changed
  layer and the new config cross the wire, the layout is assembled from hard links, then converted.
Bytes moved are counted on the wire: SFTP as the transport reports the bytes sent, S3 as curl on the login node
reports the bytes received (for the full tar: its size, every byte of which is sent).

Usage (local stack up: s3 cluster):
    .venv/bin/python benchmarks/bench_layers.py [--layer-mib 255] [--paths sftp s3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layer_support import Session

    from hpcci.stages.deploy.execute import Staged
    from hpcci.stages.sources import ImageSource

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "integration")]  # stack_env, layer_support
MiB = 1 << 20


def stack_env() -> None:
    import os

    if os.environ.get("HPCCI_LOCAL_SSH_KEY_FILE"):
        return
    from stack_env import read_env

    os.environ.update(read_env(check=True))


def deploy_timed(session: Session, source: ImageSource) -> tuple[float, Staged]:
    t0 = time.perf_counter()
    staged = session.deploy(source)
    return time.perf_counter() - t0, staged


def bench_path(via: str, v1: Path, v2: Path, root: Path) -> list[tuple[str, str, str, str]]:
    from layer_support import Session

    rows: list[tuple[str, str, str, str]] = []
    full = Session(root / f"full-{via}", via, layers=False)
    layered = Session(root / f"layers-{via}", via, layers=True)
    try:
        src_full = full.source(v2)
        full_s, full_staged = deploy_timed(full, src_full)
        full_bytes = v2.stat().st_size
        layered.deploy(layered.source(v1))  # the first commit: the store gets its blobs
        src2 = layered.source(v2)
        layer_s, staged = deploy_timed(layered, src2)
        assert staged.layers is not None
        moved, secs, fsecs = staged.layers.bytes_moved, staged.seconds, full_staged.seconds
        rows.append((
            f"second deploy after a 1 MiB layer change, {via}",
            f"{layer_s:.1f} s ({secs['stage']:.1f} stage + {secs['convert']:.1f} convert), "
            f"{moved / MiB:.2f} MiB moved",
            f"full stage + convert {full_s:.1f} s ({fsecs['stage']:.1f} + {fsecs['convert']:.1f}), "
            f"{full_bytes / MiB:.0f} MiB moved",
            f"{100 * layer_s / full_s:.0f}% of the time, {100 * moved / full_bytes:.2f}% of the bytes",
        ))  # fmt: skip
    finally:
        full.close()
        layered.close()
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer-mib", type=int, default=255, help="size of each of the four big layers")
    p.add_argument("--paths", nargs="+", default=["sftp", "s3"], choices=["sftp", "s3"])
    args = p.parse_args()
    stack_env()
    from layer_support import write_archive

    root = Path(tempfile.mkdtemp(prefix="bench-layers-"))
    try:
        base = [(f"base-{i}", args.layer_mib * MiB) for i in range(4)]
        v1 = write_archive(root / "v1.tar", [*base, ("top-1", MiB)])
        v2 = write_archive(root / "v2.tar", [*base, ("top-2", MiB)])
        print(f"image: {v2.stat().st_size / MiB:.0f} MiB, 5 layers; the second commit changes the 1 MiB one")
        rows = [r for via in args.paths for r in bench_path(via, v1, v2, root)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n| what | hpcci (staging.layers) | baseline | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
