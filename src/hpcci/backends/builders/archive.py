"""docker-archive tars on disk: written from a byte stream or found after a tool wrote them, with their sha256."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hpcci.digests import hash_file
from hpcci.files import atomic


@dataclass(frozen=True)
class Archive:
    path: Path
    size: int
    sha256: str


def write_hashed(chunks: Iterable[bytes], dest: Path) -> Archive:
    """Write a byte stream to ``dest`` (whole or not at all: hpcci.files.atomic) while computing its sha256."""
    h, size = hashlib.sha256(), 0
    with atomic(dest) as f:
        for chunk in chunks:
            h.update(chunk)
            f.write(chunk)
            size += len(chunk)
    return Archive(dest, size, h.hexdigest())


def archive_at(path: Path) -> Archive:
    """The Archive for a tar another tool has written."""
    size, digest = hash_file(path)
    return Archive(path, size, digest)
