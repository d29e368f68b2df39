"""`hpcci validate [FILES]`: check pipeline and cluster config files; `--schema KIND` prints a JSON schema."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpcci.errors import ConfigError, UsageError
from hpcci.log import Log

if TYPE_CHECKING:  # pydantic loads only when a command runs (`hpcci --help` stays fast)
    from hpcci.config import models as config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="config files (default: hpcci.yaml and cluster-configs/*.yaml, where they exist)",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="pipeline file, as for every other command; checked with the cluster configs beside it "
        "(its deploy.cluster_configs folder) unless FILEs are named",
    )
    p.add_argument(
        "--schema", choices=["pipeline", "cluster"], help="print the JSON schema for editors and exit"
    )


def default_files() -> list[Path]:
    files = [Path("hpcci.yaml")] if Path("hpcci.yaml").exists() else []
    return files + sorted(Path("cluster-configs").glob("*.yaml"))


def beside(pipeline_file: Path, loaded: list[config.Pipeline | config.Cluster]) -> list[Path]:
    """-c FILE alone: the cluster configs in its deploy.cluster_configs folder (relative to it, as deploy reads)."""
    from hpcci.config import models as config

    pipes = [p for p in loaded if isinstance(p, config.Pipeline)]
    folder = pipes[0].deploy.cluster_configs if pipes else "cluster-configs"
    return sorted((pipeline_file.parent / folder).glob("*.yaml"))


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci.config import models as config
    from hpcci.config.load import json_schema

    if args.schema:
        model = config.Pipeline if args.schema == "pipeline" else config.Cluster
        print(json.dumps(json_schema(model), indent=2))
        return 0
    named = [Path(f) for f in args.files]
    if args.config:  # the pipeline first; then the named files, else the cluster configs beside it
        files = [Path(args.config), *(f for f in named if f != Path(args.config))]
    else:
        files = named or default_files()
    if not files:
        raise UsageError(
            "no config files given and no hpcci.yaml or cluster-configs/ here; name the files to check"
        )
    problems: list[str] = []
    loaded: list[config.Pipeline | config.Cluster] = []
    for path in files:
        problems += _load(path, loaded)
    if args.config and not named:
        for path in beside(Path(args.config), loaded):
            problems += _load(path, loaded)
    problems += cross_problems(loaded, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return 0


def _load(path: Path, loaded: list[config.Pipeline | config.Cluster]) -> list[str]:
    """Load one file into ``loaded`` (saying ok), or its problems."""
    from hpcci.config import models as config
    from hpcci.config.load import load_any
    from hpcci.stages.validate import cluster_problems, pipeline_problems

    try:
        loaded.append(load_any(path))
    except ConfigError as e:
        return str(e).splitlines()
    obj = loaded[-1]
    problems = pipeline_problems(obj) if isinstance(obj, config.Pipeline) else cluster_problems(obj)
    if not problems:
        print(f"ok: {path} ({'cluster' if isinstance(obj, config.Cluster) else 'pipeline'})")
    return problems


def cross_problems(loaded: list[config.Pipeline | config.Cluster], known: Sequence[str] = ()) -> list[str]:
    """Each pipeline against the clusters it deploys to, among the files checked: its tests' resources and
    partitions, the release's module name, and (with no ``known`` problems left to fix first) the deploy plan."""
    from hpcci.config import models as config
    from hpcci.stages.validate import pair_problems

    clusters = {c.name: c for c in loaded if isinstance(c, config.Cluster)}
    problems: list[str] = []
    for pipe in (p for p in loaded if isinstance(p, config.Pipeline)):
        targets = {*pipe.deploy.clusters, *(n for t in pipe.tests for n in t.clusters or [])}
        for name in sorted(targets & clusters.keys()):
            problems += pair_problems(pipe, clusters[name], [*known, *problems])
    return problems
