"""`hpcci validate [FILES]`: check pipeline and cluster config files; `--schema KIND` prints a JSON schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hpcci.errors import ConfigError, UsageError
from hpcci.log import Log


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
    from hpcci import config
    from hpcci.config_load import json_schema, load_any

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
    for path in files:
        try:
            kind = "cluster" if isinstance(load_any(path), config.Cluster) else "pipeline"
            print(f"ok: {path} ({kind})")
        except ConfigError as e:
            problems.extend(str(e).splitlines())
    if problems:
        raise ConfigError("\n".join(problems))
    return 0
