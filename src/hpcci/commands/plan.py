"""`hpcci plan`: print what a run would do - tags, targets, per cluster the remote commands and batch scripts."""

from __future__ import annotations

import argparse
import importlib

from hpcci.commands import common
from hpcci.log import Log

SECTIONS = ("build", "publish", "deploy", "release", "report")
MODULES = {"release": "releases"}  # a section printed by another command's module


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)
    common.add_event_arguments(p)
    common.add_cluster_arguments(p)
    p.add_argument("--only", choices=SECTIONS, action="append", help="print only these stages (repeatable)")


def main(args: argparse.Namespace, log: Log) -> int:
    pipe = common.pipeline(args)
    ctx = common.PlanContext(
        pipeline=pipe,
        clusters=common.clusters(args, pipe),
        event=common.event(args),
        base=common.base_dir(args),
        records=common.records_dir(args),
    )
    ev = ctx.event
    print(
        f"# hpcci plan for {pipe.image.name}: event {ev.event_name}, ref {ev.ref or '(none)'}, sha {ev.sha or '(none)'}"
    )
    for name in args.only or SECTIONS:
        module = importlib.import_module(f"hpcci.commands.{MODULES.get(name, name)}")
        print(f"\n## {name}")
        print(module.plan_section(ctx).rstrip("\n"))
    return 0
