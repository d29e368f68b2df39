"""`hpcci validate [FILES]`: check pipeline and cluster config files; `--schema KIND` prints a JSON schema."""

from __future__ import annotations

import argparse
import json
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
        "--schema", choices=["pipeline", "cluster"], help="print the JSON schema for editors and exit"
    )


def default_files() -> list[Path]:
    files = [Path("hpcci.yaml")] if Path("hpcci.yaml").exists() else []
    return files + sorted(Path("cluster-configs").glob("*.yaml"))


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci.config import models as config
    from hpcci.config.load import json_schema, load_any

    if args.schema:
        model = config.Pipeline if args.schema == "pipeline" else config.Cluster
        print(json.dumps(json_schema(model), indent=2))
        return 0
    files = [Path(f) for f in args.files] or default_files()
    if not files:
        raise UsageError(
            "no config files given and no hpcci.yaml or cluster-configs/ here; name the files to check"
        )
    problems: list[str] = []
    loaded: list[config.Pipeline | config.Cluster] = []
    for path in files:
        try:
            loaded.append(load_any(path))
            kind = "cluster" if isinstance(loaded[-1], config.Cluster) else "pipeline"
            print(f"ok: {path} ({kind})")
        except ConfigError as e:
            problems.extend(str(e).splitlines())
    problems += cross_problems(loaded)
    if problems:
        raise ConfigError("\n".join(problems))
    return 0


def cross_problems(loaded: list[config.Pipeline | config.Cluster]) -> list[str]:
    """Each pipeline's tests against the clusters it deploys to, among the files checked (resources, partitions)."""
    from hpcci.config import models as config
    from hpcci.stages.deploy.plan import check_fits

    clusters = {c.name: c for c in loaded if isinstance(c, config.Cluster)}
    problems: list[str] = []
    for pipe in (p for p in loaded if isinstance(p, config.Pipeline)):
        targets = {*pipe.deploy.clusters, *(n for t in pipe.tests for n in t.clusters or [])}
        for name in sorted(targets & clusters.keys()):
            problems += check_fits(pipe, clusters[name])
    return problems
