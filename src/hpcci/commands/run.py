"""`hpcci run`: build, publish, deploy and report in one go, each stage reading the record the previous wrote.

Check runs open (in_progress) before the deploy and are always completed after it, whatever happened: a failed
or interrupted deploy still ends with a completed check run saying what is known.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

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


def stage_args(name: str, args: argparse.Namespace, **extra: Any) -> argparse.Namespace:
    """The stage's own defaults, overlaid with what `run` was given and with ``extra``."""
    p = argparse.ArgumentParser()
    importlib.import_module(f"hpcci.commands.{name}").add_arguments(p)
    ns = p.parse_args([])
    for key, value in {**vars(args), **extra}.items():
        if hasattr(ns, key) and value is not None:
            setattr(ns, key, value)
    return ns


def call(name: str, args: argparse.Namespace, log: Log, **extra: Any) -> int:
    module = importlib.import_module(f"hpcci.commands.{name}")
    rc: int = module.main(stage_args(name, args, **extra), log)
    return rc


def main(args: argparse.Namespace, log: Log) -> int:
    for name in ("build", "publish"):
        if name in args.skip:
            log.info(f"==> {name}: skipped (--skip {name})")
            continue
        rc = call(name, args, log)
        if rc != 0:
            return rc
    if "deploy" in args.skip:
        log.info("==> deploy: skipped (--skip deploy)")
        return call("report", args, log) if "report" not in args.skip else 0
    reporting = "report" not in args.skip
    results = common.records_dir(args) / "results.json"
    results.unlink(missing_ok=True)  # never report a previous run's results as this one's
    if reporting:
        call("report", args, log, phase="start")
    status = "failure"
    try:
        rc = call("deploy", args, log)
        status = "success" if rc == 0 else "failure"
    except KeyboardInterrupt:
        status = "cancelled"
        raise
    finally:
        if reporting:
            # finish from the results when deploy wrote them; otherwise close whatever is still open
            if results.exists() and status != "cancelled":
                call("report", args, log, phase="finish")
            else:
                call("report", args, log, phase="crash", job_status=status)
    return rc
