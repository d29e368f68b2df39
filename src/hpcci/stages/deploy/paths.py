"""Where a deploy puts things on a cluster: its paths, with the login shell's $VARS resolved (or shown as written)."""

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
    run_dir: str


def resolve_paths(cluster: Cluster, env: dict[str, str], run_id: str) -> Paths:
    """The cluster's paths with $VARS replaced by the values from the login shell."""
    p = cluster.paths
    scratch = expand(p.scratch, env, what=f"cluster {cluster.name}: paths.scratch")
    cache = expand(p.image_cache, env, what=f"cluster {cluster.name}: paths.image_cache")
    tmpdir = (
        expand(p.tmpdir, env, what=f"cluster {cluster.name}: paths.tmpdir") if p.tmpdir else f"{scratch}/tmp"
    )
    return Paths(scratch, cache, tmpdir, f"{scratch}/runs/{run_id}")


def unresolved_paths(cluster: Cluster, run_id: str) -> Paths:
    p = cluster.paths
    return Paths(p.scratch, p.image_cache, p.tmpdir or f"{p.scratch}/tmp", f"{p.scratch}/runs/{run_id}")


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
