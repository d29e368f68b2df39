"""Where a deploy puts things on a cluster: its paths, with the login shell's $VARS resolved (or shown as written).

Two cluster configs may share a login node and a file system (a cpu and a gpu config of one machine): every path a
deploy writes there is unique per (run, cluster, platform). The run folder is ``<scratch>/runs/<run id>/<cluster>``
(its files are named by test, or by image key, which holds the platform), and temporary files in the shared image
cache carry ``file_tag``: the run id and the cluster name.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcci.config.models import Cluster
from hpcci.errors import ConfigError
from hpcci.shell import expand, path_variables


@dataclass(frozen=True)
class Paths:
    """Where things go on the cluster (variables such as $SCRATCH resolved, or shown unresolved in a plan)."""

    scratch: str
    cache: str
    tmpdir: str
    run_dir: str  # this cluster's folder of the run: job scripts, outputs, registry credentials
    run_folder: str = ""  # the run's own folder (--run-id), holding one run_dir per cluster config

    @property
    def private_folders(self) -> list[str]:
        """The folders made mode 700 (the run's, then this cluster's in it): only the deploying user reads them."""
        return [f for f in (self.run_folder, self.run_dir) if f]


def resolve_paths(cluster: Cluster, env: dict[str, str], run_id: str) -> Paths:
    """The cluster's paths with $VARS replaced by the values from the login shell."""
    p = cluster.paths
    scratch = expand(p.scratch, env, what=f"cluster {cluster.name}: paths.scratch")
    cache = expand(p.image_cache, env, what=f"cluster {cluster.name}: paths.image_cache")
    tmpdir = (
        expand(p.tmpdir, env, what=f"cluster {cluster.name}: paths.tmpdir") if p.tmpdir else f"{scratch}/tmp"
    )
    return Paths(scratch, cache, tmpdir, run_dir(scratch, run_id, cluster), f"{scratch}/runs/{run_id}")


def unresolved_paths(cluster: Cluster, run_id: str) -> Paths:
    p = cluster.paths
    tmpdir = p.tmpdir or f"{p.scratch}/tmp"
    return Paths(
        p.scratch, p.image_cache, tmpdir, run_dir(p.scratch, run_id, cluster), f"{p.scratch}/runs/{run_id}"
    )


def run_dir(scratch: str, run_id: str, cluster: Cluster) -> str:
    """The run's folder for one cluster: the run's own folder (--run-id) holds one per cluster config."""
    return f"{scratch}/runs/{run_id}/{cluster.name}"


def file_tag(run_id: str, cluster: Cluster) -> str:
    """What names a temporary file of this run and cluster in a folder other clusters share (the image cache)."""
    return f"{run_id}.{cluster.name}"


def needed_variables(cluster: Cluster) -> list[str]:
    p = cluster.paths
    return path_variables([p.scratch, p.image_cache, p.tmpdir or ""]) + ["HOME"]


def require_absolute_paths(cluster: Cluster) -> None:
    """login.mode automation has no login shell to resolve $VARS in: the paths must be written out."""
    p = cluster.paths
    for name, value in (("scratch", p.scratch), ("image_cache", p.image_cache), ("tmpdir", p.tmpdir or "/")):
        used = path_variables([value])
        if used or not value.startswith("/"):
            why = f"uses ${used[0]}" if used else "is relative"
            raise ConfigError(
                f"{cluster.source.where(('paths', name))}: paths.{name} {why}, but login.mode automation has no "
                f"login shell to resolve it in; write the absolute path (e.g. ask `echo ${used[0] if used else 'HOME'}` "
                "on a regular login node once)"
            )
