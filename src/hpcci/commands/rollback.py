"""`hpcci rollback --cluster NAME --to VERSION`: make an installed version the module's default again.

Moves only the default pointer (and the manifest's record of it), atomically; a version that is not installed is
refused with one line and exit 91, changing nothing.
"""

from __future__ import annotations

import argparse
import os
import time

from hpcci import wiring
from hpcci.commands import common
from hpcci.errors import UsageError
from hpcci.log import Log


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_release_cluster_arguments(p)
    p.add_argument("--to", required=True, metavar="VERSION", help="the installed version to make the default")


def main(args: argparse.Namespace, log: Log) -> int:
    from hpcci.stages.release.manifest import VERSION  # tags -> config -> pydantic: not at --help

    if not VERSION.match(args.to):
        raise UsageError(
            f"--to {args.to!r} is not a module version (e.g. 0.1.0): letters, digits, '.', '_', '+', '-'"
        )
    cluster, name = common.release_target(args)
    remote, installed = wiring.connect_releases(cluster, name, log)
    try:
        before = installed.manifest().default
        if before == args.to:
            print(f"{name}/{args.to} is the default on {cluster.name} already; nothing changed")
            return 0
        run_id = f"rollback-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
        installed.rollback(args.to, run_id)
    finally:
        remote.close()
    print(f"{name}/{args.to} is the default on {cluster.name} now (was {before or 'none'})")
    return 0
