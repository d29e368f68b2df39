"""Content digests, one place: sha256 of local files and of `sha256sum` output read back from a cluster (pure)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

CHUNK = 8 << 20


def hash_file(path: Path, chunk: int = CHUNK) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a local file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a local file."""
    return hash_file(path)[1]


def parse_sha256sum(stdout: str) -> str | None:
    """The digest from `sha256sum FILE` output (a leading backslash marks an escaped name), or None."""
    m = re.match(r"\s*\\?([0-9a-f]{64})\s", stdout + " ")
    return m.group(1) if m else None
