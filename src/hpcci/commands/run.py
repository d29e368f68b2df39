"""`hpcci run`: build, publish, deploy and report in one go, each stage reading the record the previous wrote."""

from __future__ import annotations

import argparse
import importlib

from hpcci.commands import common
from hpcci.log import Log

STAGES = ("build", "publish", "deploy", "report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_event_arguments(p)
    common.add_cluster_arguments(p)
    p.add_argument(
        "--skip", choices=STAGES, action="append", default=[], help="leave out a stage (repeatable)"
    )


def main(args: argparse.Namespace, log: Log) -> int:
    for name in STAGES:
        if name in args.skip:
            log.info(f"==> {name}: skipped (--skip {name})")
            continue
        module = importlib.import_module(f"hpcci.commands.{name}")
        stage_args = module_args(module, args)
        rc: int = module.main(stage_args, log)
        if rc != 0:
            return rc
    return 0


def module_args(module: object, args: argparse.Namespace) -> argparse.Namespace:
    """The stage's own defaults, overlaid with what `run` was given."""
    p = argparse.ArgumentParser()
    module.add_arguments(p)  # type: ignore[attr-defined]
    ns = p.parse_args([])
    for key, value in vars(args).items():
        if hasattr(ns, key) and value is not None:
            setattr(ns, key, value)
    return ns
