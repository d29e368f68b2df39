"""Arguments and loading shared by the commands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hpcci.context import GitEvent, from_environ

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
