"""Arguments and loading shared by the commands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hpcci.context import GitEvent, from_environ
from hpcci.errors import UsageError

if TYPE_CHECKING:  # config imports pydantic: only when a command runs, so `hpcci --help` stays fast
    from hpcci.config.models import Cluster, Pipeline


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c", "--config", default="hpcci.yaml", metavar="FILE", help="pipeline file (default: hpcci.yaml)"
    )
    p.add_argument(
        "--records",
        default=".hpcci",
        metavar="DIR",
        help="where stage records are read and written (default: .hpcci)",
    )


def add_event_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("event (default: from the GitHub Actions environment)")
    g.add_argument(
        "--event", dest="event_name", metavar="NAME", help="push | pull_request | workflow_dispatch"
    )
    g.add_argument("--ref", help="git ref, e.g. refs/tags/v1.2.3 or refs/heads/main")
    g.add_argument("--sha", help="commit sha")
    g.add_argument("--pr", dest="pr_number", type=int, metavar="N", help="pull request number")
    g.add_argument("--pr-head-sha", metavar="SHA", help="the pull request's head commit")
    g.add_argument("--repository", metavar="OWNER/NAME", help="GitHub repository")


def add_cluster_arguments(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument(
        "--cluster",
        dest="clusters",
        action="append",
        metavar="NAME",
        required=required,
        help="cluster name from cluster-configs/ (repeatable; default: deploy.clusters in hpcci.yaml)",
    )


def pipeline(args: argparse.Namespace) -> Pipeline:
    from hpcci.config.load import load_pipeline

    return load_pipeline(Path(args.config))


def base_dir(args: argparse.Namespace) -> Path:
    """Cluster configs and build contexts are relative to the pipeline file's folder."""
    return Path(args.config).resolve().parent


def clusters(args: argparse.Namespace, pipe: Pipeline) -> dict[str, Cluster]:
    from hpcci.config.load import load_clusters

    names = args.clusters or pipe.deploy.clusters
    return load_clusters(pipe, names, base_dir(args))


def event(args: argparse.Namespace) -> GitEvent:
    return from_environ(
        event_name=getattr(args, "event_name", None),
        ref=getattr(args, "ref", None),
        sha=getattr(args, "sha", None),
        pr_number=getattr(args, "pr_number", None),
        pr_head_sha=getattr(args, "pr_head_sha", None),
        repository=getattr(args, "repository", None),
    )


def records_dir(args: argparse.Namespace) -> Path:
    return Path(args.records)


class PlanContext:
    """Everything `hpcci plan` knows: the loaded configs and the event. Stages print from it, touching nothing."""

    def __init__(
        self,
        pipeline: Pipeline,
        clusters: dict[str, Cluster],
        event: GitEvent,
        base: Path,
        records: Path,
    ) -> None:
        self.pipeline = pipeline
        self.clusters = clusters
        self.event = event
        self.base = base
        self.records = records


RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def run_id(text: str) -> str:
    """--run-id: one folder name on the cluster (<scratch>/runs/<ID>), so never a path or a dot-name."""
    if not RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run id: use 1-100 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        )
    return text


def add_release_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """--cluster (one), the configs, and the module name when there is no hpcci.yaml to take it from."""
    add_pipeline_arguments(p)
    p.add_argument("--cluster", dest="clusters", action="append", required=True, metavar="NAME",
                   help="cluster name from cluster-configs/ (or a path to its YAML)")  # fmt: skip
    p.add_argument(
        "--cluster-configs", metavar="DIR", help="folder of cluster configs when there is no hpcci.yaml"
    )
    p.add_argument(
        "--name",
        metavar="NAME",
        help="the module's name (default: release.name, else image.name's last part)",
    )


def release_target(args: argparse.Namespace) -> tuple[Cluster, str]:
    """The one cluster (it must have a release section) and the module's name."""
    from pathlib import Path

    from hpcci.config.types import check_name
    from hpcci.stages.release.plan import module_name

    if len(args.clusters) != 1:
        raise UsageError("name one cluster: --cluster NAME")
    (cluster,) = named_clusters(args).values()
    if cluster.release is None:
        raise UsageError(
            f"{cluster.source.file}: cluster {cluster.name} has no release section, so nothing is installed there as a "
            "module; add one (root, modulefiles, module_system)"
        )
    if args.name:
        try:
            return cluster, check_name(args.name)
        except ValueError as e:
            raise UsageError(f"--name {e}") from e
    if cluster.release.name:
        return cluster, cluster.release.name
    if not Path(args.config).exists():
        raise UsageError(f"which module? pass --name NAME (no {args.config} to take image.name from)")
    return cluster, module_name(cluster.release, pipeline(args).image.name)


def named_clusters(args: argparse.Namespace) -> dict[str, Cluster]:
    """The clusters a cluster command names: from hpcci.yaml's deploy section, or cluster config files by name."""
    from hpcci.config.load import load_cluster

    if Path(args.config).exists() and not args.cluster_configs:
        pipe = pipeline(args)
        return clusters(args, pipe)
    if not args.clusters:
        raise UsageError(
            "which cluster? pass --cluster NAME (a file in cluster-configs/) or a path to its YAML"
        )
    folder = Path(args.cluster_configs or "cluster-configs")
    out: dict[str, Cluster] = {}
    for name in args.clusters:
        path = Path(name) if name.endswith((".yaml", ".yml")) else folder / f"{name}.yaml"
        if not path.exists():
            raise UsageError(f"{path}: no such cluster config; see cluster-configs/ for the known clusters")
        cluster = load_cluster(path)
        out[cluster.name] = cluster
    return out
