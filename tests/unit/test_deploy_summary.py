"""Deploy's summary lines say what happened to each cluster's image, also when it never got converted."""

from __future__ import annotations

from hpcci.commands.deploy import headline
from hpcci.errors import RemoteError
from hpcci.records import ClusterDeploy, ClusterResult
from hpcci.stages.deploy.outcome import Outcome

DIGEST = "sha256:" + "ab" * 32


def outcome(sif: str, *, error: str | None = None, digest: str = DIGEST, hit: bool = False) -> Outcome:
    deploy = ClusterDeploy("c", "login", "linux/amd64", "sftp", None, None, sif, digest, cache_hit=hit)
    result = ClusterResult("c", "linux/amd64", [], digest, sif_path=sif or None, error=error)
    return Outcome(deploy, result, RemoteError(error) if error else None)


def test_a_converted_image_points_at_its_sif() -> None:
    assert (
        headline(outcome("/s/i.sif", hit=True)) == f"== c: linux/amd64 {DIGEST[:19]} -> /s/i.sif (cache hit)"
    )


def test_a_cluster_that_failed_before_conversion_has_no_empty_arrow() -> None:
    line = headline(outcome("", error="cluster c: cannot connect"))
    assert (
        line
        == f"== c: linux/amd64 {DIGEST[:19]}: not converted: the cluster failed first (the error is below)"
    )
    assert not line.rstrip().endswith("->")


def test_a_cluster_that_failed_before_knowing_its_image_says_so() -> None:
    assert headline(outcome("", error="x", digest="")).startswith("== c: linux/amd64: not converted: ")
