"""Provenance of the converted image: its sha256, read on the login node once every conversion has ended.

The plan holds the steps (so `hpcci plan` prints them and `hpcci deploy` runs exactly them); they run after the jobs
are followed because a conversion job leaves its image only at its end. The sha256 is computed once, for an image
converted by this deploy, and kept next to it (``IMAGE.sha256``, written by hpcci only after hashing the final
image), so a re-deploy that hits the cache reads 64 bytes instead of hashing gigabytes. Only `cat`, `sha256sum` and
an SFTP write: an automation node allows them. A checksum that cannot be read (the conversion failed, the runtime
keeps its images in a store) is left out of the record; it never fails a deploy. Imports no transport (the deploy
plan imports this module).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hpcci.digests import parse_sha256sum
from hpcci.errors import HpcciError
from hpcci.stages.cluster import runtime
from hpcci.stages.steps import Command, Step, WriteFile

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hpcci.config.models import Cluster
    from hpcci.stages.deploy.image_plan import ImagePlan


class PlannedImages(Protocol):
    """What the checksum steps read of a cluster's plan (a ClusterPlan is one)."""

    @property
    def cluster(self) -> Cluster: ...
    @property
    def images(self) -> Mapping[str, ImagePlan]: ...


class Ran(Protocol):
    """A finished command (hpcci.process.Completed)."""

    @property
    def ok(self) -> bool: ...

    @property
    def stdout(self) -> str: ...


class Node(Protocol):
    """What the checksum steps need from a Remote."""

    def run(self, argv: list[str], *, timeout: float) -> Ran: ...

    def write_text(self, remote: str, text: str) -> None: ...


@dataclass(frozen=True)
class SifChecksum:
    """One converted image's sha256: as recorded at its conversion, else computed now and recorded."""

    image: str
    recorded: Command
    compute: Command
    record: WriteFile  # its text is the computed `sha256sum` line, known only when it ran

    def steps(self) -> list[Step]:
        return [self.recorded, self.compute, self.record]


def sif_checksum(image: str) -> SifChecksum:
    kept = f"{image}.sha256"
    return SifChecksum(
        image,
        Command(
            ["cat", "--", kept], note="once the jobs ended: the image's sha256 recorded when it was converted"
        ),
        Command(
            ["sha256sum", "--", image], timeout=900, note="converted by this deploy, or nothing recorded"
        ),
        WriteFile(kept, f"SHA256  {image}\n"),
    )


def sif_checksums(plan: PlannedImages) -> dict[str, SifChecksum]:
    """platform -> the steps that give its converted image's sha256 (none where images are not files: podman)."""
    if not runtime(plan.cluster).is_file():
        return {}
    return {platform: sif_checksum(image.image) for platform, image in plan.images.items()}


def read_sif_checksums(node: Node, plan: PlannedImages, converted: Collection[str]) -> dict[str, str]:
    """platform -> sha256 of its converted image; ``converted``: the platforms this deploy converted (their
    recorded sha256, if any, belongs to an earlier conversion and is replaced)."""
    out: dict[str, str] = {}
    for platform, steps in sif_checksums(plan).items():
        try:
            sha = _read(node, steps, fresh=platform in converted)
        except HpcciError:
            continue  # provenance is best effort: the deploy's outcome does not depend on it
        if sha:
            out[platform] = sha
    return out


def _read(node: Node, steps: SifChecksum, *, fresh: bool) -> str | None:
    recorded = node.run(steps.recorded.argv, timeout=steps.recorded.timeout)
    sha = parse_sha256sum(recorded.stdout) if recorded.ok and not fresh else None
    if sha:
        return sha
    done = node.run(steps.compute.argv, timeout=steps.compute.timeout)
    sha = parse_sha256sum(done.stdout) if done.ok else None
    if sha:
        node.write_text(steps.record.path, f"{sha}  {steps.image}\n")
    return sha
