"""`hpcci deploy`."""

from __future__ import annotations

import argparse

from hpcci.commands import common
from hpcci.errors import NotImplementedYet
from hpcci.log import Log


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_pipeline_arguments(p)


def main(args: argparse.Namespace, log: Log) -> int:
    raise NotImplementedYet("`hpcci deploy` is not implemented yet in this version; see the README for the roadmap")
