"""Provenance of the converted image: its sha256, read on the login node once every conversion has ended.

The plan holds the step (so `hpcci plan` prints it and `hpcci deploy` runs exactly it); it runs after the jobs are
followed because a conversion job only leaves its image at its end. Plain `sha256sum`, which an automation node
also allows. A checksum that cannot be read (the conversion failed, the runtime keeps images in a store) is left
out of the record; it never fails a deploy. Imports no transport (the deploy plan imports this module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from hpcci.digests import parse_sha256sum
from hpcci.errors import HpcciError
from hpcci.stages.image_plan import runtime
from hpcci.stages.steps import Command

if TYPE_CHECKING:
    from hpcci.stages.plan import ClusterPlan


class Ran(Protocol):
    """A finished command (hpcci.process.Completed)."""

    @property
    def ok(self) -> bool: ...

    @property
    def stdout(self) -> str: ...


class Runs(Protocol):
    """What reading the checksums needs from a Remote."""

    def run(self, argv: list[str], *, timeout: float) -> Ran: ...


def sif_checksum_step(image_path: str) -> Command:
    return Command(
        ["sha256sum", "--", image_path],
        timeout=900,
        note="once the jobs ended: the converted image's sha256, for the check run's provenance",
    )


def sif_checksums(plan: ClusterPlan) -> dict[str, Command]:
    """platform -> the step that reads its converted image's sha256 (none where images are not files: podman)."""
    if not runtime(plan.cluster).is_file():
        return {}
    return {platform: sif_checksum_step(image.image) for platform, image in plan.images.items()}


def read_sif_checksums(remote: Runs, plan: ClusterPlan) -> dict[str, str]:
    """platform -> sha256 of its converted image, for those that exist and could be read."""
    out: dict[str, str] = {}
    for platform, step in sif_checksums(plan).items():
        try:
            done = remote.run(step.argv, timeout=step.timeout)
        except HpcciError:
            continue  # provenance is best effort: the deploy's outcome does not depend on it
        sha = parse_sha256sum(done.stdout) if done.ok else None
        if sha:
            out[platform] = sha
    return out
