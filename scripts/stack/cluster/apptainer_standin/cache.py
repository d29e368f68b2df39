"""The image cache of the hpcci apptainer STAND-IN (not the real Apptainer): unpacked copies of SquashFS images.

ch-run runs a directory, so exec/run/shell unpack an image once into APPTAINER_CACHEDIR/standin-rootfs/<key>
(key: path, size, mtime, inode), under a lock so concurrent jobs share one copy; copies unused for an hour go.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time

from apptainer_standin.console import PROG, UsageError, fatal, usage, verbose
from apptainer_standin.host import make_writable, rmtree, run_tool, setting, touch
from apptainer_standin.image import is_squashfs

COMPLETE = ".hpcci-standin-complete"  # written last: a tree without it is a partial unpack


def cache_root() -> str:
    """APPTAINER_CACHEDIR (default ~/.apptainer/cache), created and checked writable."""
    d = setting("CACHEDIR") or os.path.join(os.path.expanduser("~"), ".apptainer", "cache")
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        fatal(
            f"could not create cache directory {d}: {e.strerror}: "
            "set APPTAINER_CACHEDIR to a writable directory"
        )
    if not os.access(d, os.W_OK | os.X_OK):
        fatal(f"cache directory {d} is not writable: set APPTAINER_CACHEDIR to a writable directory")
    return d


def _rootfs_dir() -> str:
    return os.path.join(cache_root(), "standin-rootfs")


def rootfs_for(image: str) -> str:
    """An unpacked, read-only-used copy of the SquashFS image in the cache (shared by concurrent jobs)."""
    if os.path.isdir(image):
        return os.path.abspath(image)
    if not os.path.exists(image):
        fatal(
            f"could not open image {os.path.abspath(image)}: failed to retrieve path for {image}: "
            f"lstat {image}: no such file or directory"
        )
    if not is_squashfs(image):
        fatal(f"could not open image {os.path.abspath(image)}: image format not recognized")
    real = os.path.realpath(image)
    st = os.stat(real)
    base = _rootfs_dir()
    os.makedirs(base, exist_ok=True)
    key = hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode()).hexdigest()[:32]
    tree = os.path.join(base, key)
    if os.path.exists(os.path.join(tree, COMPLETE)):
        os.utime(tree)
        return tree
    with open(os.path.join(base, key + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(tree, COMPLETE)):
            _unpack(real, tree, base)
        prune_cache(base, keep=key)
    return tree


def _unpack(real: str, tree: str, base: str) -> None:
    part = f"{tree}.tmp-{os.getpid()}"
    rmtree(part)
    verbose(f"unpacking {real} into {tree}")
    try:
        run_tool(
            ["unsquashfs", "-quiet", "-no-progress", "-no-xattrs", "-ignore-errors", "-d", part, real],
            "could not open image: unpacking failed",
            space_dirs=[base],
        )
        make_writable(part)
        touch(os.path.join(part, COMPLETE))
        rmtree(tree)
        os.rename(part, tree)
    finally:
        rmtree(part)


def prune_cache(base: str, keep: str, max_age: int = 3600) -> None:
    """Remove unpacked copies (and their locks) not used for ``max_age`` seconds, except ``keep``."""
    now = time.time()
    for n in os.listdir(base):
        p = os.path.join(base, n)
        if n.startswith(keep) or n.endswith(".lock"):
            continue
        try:
            if now - os.stat(p).st_mtime > max_age:
                rmtree(p)
                if os.path.exists(p + ".lock"):
                    os.unlink(p + ".lock")
        except OSError:
            pass


def cmd_cache(args: list[str]) -> int:
    """`cache clean` empties the stand-in's cache; `cache list` counts what it holds."""
    if not args or args[0] in ("-h", "--help"):
        print(usage("cache clean [-f]", "cache list"))
        return 0
    if args[0] == "clean":
        rmtree(_rootfs_dir())
        return 0
    if args[0] == "list":
        base = _rootfs_dir()
        n = len([x for x in os.listdir(base) if not x.endswith(".lock")]) if os.path.isdir(base) else 0
        print(f"There are {n} unpacked container file(s) in the hpcci stand-in cache")
        return 0
    raise UsageError(f'unknown command "{args[0]}" for "{PROG} cache"')
