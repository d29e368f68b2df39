"""Conversion figures: mksquashfs of the same root filesystem with gzip (Apptainer's default), lz4 and zstd levels.

Packs each tree the way Apptainer 1.4 does for `apptainer build --mksquashfs-args "-comp X -processors N"` (and
the hpcci stand-in with it): `mksquashfs ROOT OUT -noappend -all-root -comp X -processors N`; zstd at levels 1, 3
(what `runtime.compression: auto` and `zstd` pass), 6, 9 and mksquashfs's default 15. Each image is read back in
full (`unsquashfs` of every file: what a program reading the whole image pays to decompress it). Two trees:
- a 1 GiB image: files copied from this machine's /usr (programs, libraries, data: what images are made of) until
  the tree holds --size-mib;
- the test suite's image (the local stack's base image, `docker export`ed), to tell what gzip costs the tests.

Usage:  .venv/bin/python benchmarks/bench_convert.py [--size-mib 1024] [--processors 2] [--runs 1]
            [--only gzip --only "zstd level 1" ...] [--no-base]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
# label -> mksquashfs words; zstd's mksquashfs default level is 15 (slow), level 3 is what hpcci passes
COMPRESSIONS = {
    "gzip": ["-comp", "gzip"],
    "lz4": ["-comp", "lz4"],
    "zstd level 1": ["-comp", "zstd", "-Xcompression-level", "1"],
    "zstd": ["-comp", "zstd", "-Xcompression-level", "3"],
    "zstd level 6": ["-comp", "zstd", "-Xcompression-level", "6"],
    "zstd level 9": ["-comp", "zstd", "-Xcompression-level", "9"],
    "zstd level 15": ["-comp", "zstd"],
}
BASE_IMAGE = "127.0.0.1:5000/hpcci/base:bookworm"


def fill_from_usr(root: Path, size: int) -> int:
    """Copy regular files from /usr into ``root`` until it holds ``size`` bytes; the bytes copied."""
    total = 0
    for top, dirs, files in os.walk("/usr"):
        dirs.sort()
        for name in sorted(files):
            src = Path(top) / name
            if src.is_symlink() or not src.is_file():
                continue
            try:
                n = src.stat().st_size
                dest = root / src.relative_to("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            except OSError:
                continue  # unreadable: skip it
            total += n
            if total >= size:
                return total
    return total


def export_image(root: Path, image: str) -> bool:
    """The image's filesystem (docker create + export) unpacked into ``root``; False without docker or image."""
    docker = shutil.which("docker")
    if not docker:
        return False
    made = subprocess.run([docker, "create", image], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return False
    cid = made.stdout.strip()
    try:
        tar = root.parent / "export.tar"
        subprocess.run([docker, "export", "-o", str(tar), cid], check=True)
        with tarfile.open(tar) as t:
            t.extractall(root, filter="tar")
        tar.unlink()
    finally:
        subprocess.run([docker, "rm", cid], capture_output=True, check=False)
    return True


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def pack(root: Path, out: Path, comp: list[str], processors: int) -> tuple[float, int, float]:
    """(wall seconds, image bytes, seconds to read every file back) of one mksquashfs run."""
    argv = ["mksquashfs", str(root), str(out), "-noappend", "-all-root", "-no-progress", "-quiet",
            *comp, "-processors", str(processors)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    size = out.stat().st_size
    back = out.parent / "back"
    t0 = time.perf_counter()
    subprocess.run(["unsquashfs", "-no-progress", "-quiet", "-processors", str(processors), "-d", str(back),
                    str(out)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    read = time.perf_counter() - t0
    shutil.rmtree(back)
    out.unlink()
    return took, size, read


def rows(what: str, root: Path, processors: int, runs: int, only: list[str]) -> list[str]:
    data = tree_size(root)
    chosen = {c: w for c, w in COMPRESSIONS.items() if not only or c in only or c == "gzip"}
    times: dict[str, list[float]] = {c: [] for c in chosen}
    reads: dict[str, list[float]] = {c: [] for c in chosen}
    sizes: dict[str, int] = {}
    for _ in range(runs):  # interleaved: every compression sees the same machine load
        for comp, words in chosen.items():
            t, sizes[comp], r = pack(root, root.parent / "out.sqfs", words, processors)
            times[comp].append(t)
            reads[comp].append(r)
    gzip_t = statistics.median(times["gzip"])
    out = []
    for comp in chosen:
        t = statistics.median(times[comp])
        out.append(
            f"| convert {what} ({data / MiB:.0f} MiB of files), mksquashfs {' '.join(COMPRESSIONS[comp])} "
            f"-processors {processors} "
            f"| {t:.1f} s, image {sizes[comp] / MiB:.0f} MiB ({100 * sizes[comp] / data:.0f}%), "
            f"read back {statistics.median(reads[comp]):.1f} s "
            f"| gzip {gzip_t:.1f} s | {gzip_t / t:.1f}x faster |"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--processors", type=int, default=2)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--only", action="append", default=[], choices=list(COMPRESSIONS),
                   help="these compressions (and gzip, the baseline) only")  # fmt: skip
    p.add_argument("--no-base", action="store_true", help="skip the test suite's base image")
    args = p.parse_args()
    load = os.getloadavg()[0]
    out: list[str] = []
    with tempfile.TemporaryDirectory(
        prefix="hpcci-bench-", dir=os.environ.get("HPCCI_TMPDIR", "/var/tmp")
    ) as d:
        big = Path(d) / "big" / "rootfs"
        big.mkdir(parents=True)
        fill_from_usr(big, args.size_mib * MiB)
        out += rows(f"a {args.size_mib} MiB image", big, args.processors, args.runs, args.only)
        shutil.rmtree(big)
        small = Path(d) / "small" / "rootfs"
        small.mkdir(parents=True)
        if not args.no_base and export_image(small, BASE_IMAGE):
            out += rows("the test suite's base image", small, args.processors, args.runs, args.only)
    print(f"load average at the start: {load:.1f} (2 shared cores)")
    print("| what | figure | baseline | ratio |")
    print("|---|---|---|---|")
    print("\n".join(out))


if __name__ == "__main__":
    main()
