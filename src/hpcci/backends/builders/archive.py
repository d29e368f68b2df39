"""docker-archive tars on disk: written from a byte stream or found after a tool wrote them, with their sha256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hpcci.digests import hash_file


@dataclass(frozen=True)
class Archive:
    path: Path
    size: int
    sha256: str


def write_hashed(chunks: Iterable[bytes], dest: Path) -> Archive:
    """Write a byte stream to ``dest`` (via a temp name, then rename) while computing its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                h.update(chunk)
                f.write(chunk)
                size += len(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return Archive(dest, size, h.hexdigest())


def archive_at(path: Path) -> Archive:
    """The Archive for a tar another tool has written."""
    size, digest = hash_file(path)
    return Archive(path, size, digest)
